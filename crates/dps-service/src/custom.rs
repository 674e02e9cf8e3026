//! Custom allocation: the [`CustomAllocator`] a scope calls when a registration's effective
//! policy is `custom`, and the request and response it exchanges, which are exactly the body of
//! Azure's custom-allocation webhook (`AllocationRequest` / `AllocationResponse`).
//!
//! The engine calls the allocator; it does not know whether the answer comes from an HTTPS
//! webhook (`dps_connect::WebhookAllocator`) or from the embedding program's own Rust code. An
//! implementation returns a boxed future, so the trait is object-safe and runtime-agnostic:
//!
//! ```
//! use dps_service::{
//!     BoxFuture, CustomAllocationError, CustomAllocationRequest, CustomAllocationResponse,
//!     CustomAllocator,
//! };
//!
//! /// Sends every device to the last linked hub and tells it so.
//! #[derive(Debug)]
//! struct LastHub;
//!
//! impl CustomAllocator for LastHub {
//!     fn allocate<'a>(
//!         &'a self,
//!         req: &'a CustomAllocationRequest,
//!     ) -> BoxFuture<'a, Result<CustomAllocationResponse, CustomAllocationError>> {
//!         Box::pin(async move {
//!             let hub = req.linked_hubs.last().cloned();
//!             Ok(CustomAllocationResponse {
//!                 iot_hub_host_name: hub,
//!                 initial_twin: None,
//!                 payload: Some(serde_json::json!({"chosenBy": "LastHub"})),
//!             })
//!         })
//!     }
//! }
//! ```
//!
//! Outcomes, as Azure records them: a hub outside `linkedHubs`, or none, fails the registration
//! with 400208; [`CustomAllocationError::Unauthorized`] with 400209; anything else with 400207.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use dps_types::{CustomAllocationDefinition, EnrollmentGroup, IndividualEnrollment, InitialTwin};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A boxed, sendable future: what [`CustomAllocator::allocate`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides the hub of a registration whose policy is `custom`.
///
/// Called on every registration through such an enrollment, re-registrations included. It runs
/// on the registration path (the device waits), so it should answer within seconds; retrying a
/// remote service is its own business.
pub trait CustomAllocator: fmt::Debug + Send + Sync + 'static {
    /// Chooses among `request.linked_hubs`.
    fn allocate<'a>(
        &'a self,
        request: &'a CustomAllocationRequest,
    ) -> BoxFuture<'a, Result<CustomAllocationResponse, CustomAllocationError>>;
}

/// The allocation request (Azure's `AllocationRequest`): serialized as is, it is the webhook's
/// JSON body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CustomAllocationRequest {
    /// The individual enrollment the device registers through, without its keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub individual_enrollment: Option<IndividualEnrollment>,
    /// The enrollment group the device registers through, without its keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_group: Option<EnrollmentGroup>,
    /// The device and its registration.
    pub device_runtime_context: DeviceRuntimeContext,
    /// The hub host names the answer must be one of: the enrollment's hubs, else every linked
    /// hub; only the current hub when the device re-registers and may not move.
    pub linked_hubs: Vec<String>,
    /// The enrollment's `customAllocationDefinition` with its secret-bearing URL (not part of
    /// the body).
    #[serde(skip)]
    pub definition: Option<CustomAllocationDefinition>,
}

/// `deviceRuntimeContext` of the allocation request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeviceRuntimeContext {
    /// The registration ID.
    pub registration_id: String,
    /// The hub of the previous assignment, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_iot_hub_host_name: Option<String>,
    /// The device ID of the previous assignment, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_device_id: Option<String>,
    /// `{}` for symmetric-key attestation (Azure sends no keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<Map<String, Value>>,
    /// The device's registration payload, if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

impl DeviceRuntimeContext {
    /// The context of a first registration of `registration_id`.
    pub fn new(registration_id: impl Into<String>) -> Self {
        Self {
            registration_id: registration_id.into(),
            current_iot_hub_host_name: None,
            current_device_id: None,
            symmetric_key: None,
            payload: None,
        }
    }
}

impl CustomAllocationRequest {
    /// A request for `context` over `linked_hubs`, without an enrollment (tests, embedders).
    pub fn new(context: DeviceRuntimeContext, linked_hubs: Vec<String>) -> Self {
        Self {
            individual_enrollment: None,
            enrollment_group: None,
            device_runtime_context: context,
            linked_hubs,
            definition: None,
        }
    }
}

/// The allocation response (Azure's `AllocationResponse`, the webhook's 200 body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationResponse {
    /// The chosen hub: required, one of the request's `linkedHubs`.
    #[serde(default)]
    pub iot_hub_host_name: Option<String>,
    /// Replaces the enrollment's initial twin (when the device's twin is set from it).
    #[serde(default)]
    pub initial_twin: Option<InitialTwin>,
    /// Returned to the device in `registrationState.payload`.
    #[serde(default)]
    pub payload: Option<Value>,
}

/// Why a custom allocator gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CustomAllocationError {
    /// The allocator refused our credentials (webhook 401): Azure's 400209.
    #[error("the custom allocation webhook refused the request as unauthorized: {0}")]
    Unauthorized(String),
    /// Anything else (another status, unreachable, timed out, malformed answer): 400207.
    #[error("custom allocation failed: {0}")]
    Failed(String),
}

impl CustomAllocationError {
    /// Azure's registration error code for this failure.
    pub fn error_code(&self) -> u32 {
        match self {
            Self::Unauthorized(_) => 400_209,
            Self::Failed(_) => 400_207,
        }
    }
}

/// Replaces the secret part of a webhook URL (its query string) for logs and webhook bodies.
pub(crate) fn mask_definition(def: &mut Option<CustomAllocationDefinition>) {
    if let Some(d) = def
        && let Some((base, _)) = d.webhook_url.split_once('?')
    {
        d.webhook_url = format!("{base}?****");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_serializes_as_azures_webhook_body() {
        let mut ctx = DeviceRuntimeContext::new("contoso-toaster-007");
        ctx.symmetric_key = Some(Map::new());
        ctx.payload = Some(serde_json::json!({"fw": "12.0.2.5"}));
        let req = CustomAllocationRequest {
            definition: Some(CustomAllocationDefinition {
                webhook_url: "https://x/api/f?code=secret".into(),
                api_version: "2021-10-01".into(),
            }),
            ..CustomAllocationRequest::new(ctx, vec!["hub-1.azure-devices.net".into()])
        };
        let body = serde_json::to_value(&req).expect("serializes");
        assert_eq!(
            body,
            serde_json::json!({
                "deviceRuntimeContext": {
                    "registrationId": "contoso-toaster-007",
                    "symmetricKey": {},
                    "payload": {"fw": "12.0.2.5"}
                },
                "linkedHubs": ["hub-1.azure-devices.net"]
            })
        );
        assert!(!body.to_string().contains("secret"));
    }

    #[test]
    fn responses_parse_with_optional_fields_and_codes_map() {
        let r: CustomAllocationResponse = serde_json::from_str(
            r#"{"iotHubHostName":"h.example.net","initialTwin":{"tags":{"a":1}},"payload":{"p":1}}"#,
        )
        .expect("parses");
        assert_eq!(r.iot_hub_host_name.as_deref(), Some("h.example.net"));
        assert!(r.initial_twin.and_then(|t| t.tags).is_some());
        let empty: CustomAllocationResponse = serde_json::from_str("{}").expect("parses");
        assert_eq!(empty, CustomAllocationResponse::default());
        assert_eq!(
            CustomAllocationError::Unauthorized("x".into()).error_code(),
            400_209
        );
        assert_eq!(
            CustomAllocationError::Failed("x".into()).error_code(),
            400_207
        );
        let mut def = Some(CustomAllocationDefinition {
            webhook_url: "https://f.example.net/api/alloc?code=k3y".into(),
            api_version: "2021-10-01".into(),
        });
        mask_definition(&mut def);
        assert_eq!(
            def.map(|d| d.webhook_url).as_deref(),
            Some("https://f.example.net/api/alloc?****")
        );
    }
}
