//! The device registration flow as a sans-I/O state machine: register, wait `Retry-After`, poll
//! the operation until it is `assigned` (or fails), retrying throttling and server errors.
//!
//! [`RegistrationFlow`] never touches a socket or a clock. A driver (such as
//! [`register_https`](super::https::register_https), or the MQTT
//! [`Connection`](super::mqtt::Connection)) feeds it time and responses and carries out the
//! requests it asks for. The calling order is:
//!
//! 1. [`poll_outcome`](RegistrationFlow::poll_outcome): if it returns `Some`, the flow is over.
//! 2. [`poll_transmit`](RegistrationFlow::poll_transmit)`(now)`: if it returns a [`Request`],
//!    send it and answer with exactly one [`handle_response`](RegistrationFlow::handle_response)
//!    or [`handle_transport_error`](RegistrationFlow::handle_transport_error); go to 1.
//! 3. Otherwise wait until [`poll_timeout`](RegistrationFlow::poll_timeout) and go to 1.
//!
//! Rules, as the Azure SDKs behave (device protocol reference §3.4, §11.1):
//!
//! * a `2xx` whose body says `assigning` (or `unassigned`) schedules a poll after `Retry-After`
//!   (default 2 s, clamped to 1-60 s);
//! * `assigned` ends the flow with the [`DeviceRegistrationResult`] (which must name the hub and
//!   the device ID); `failed` ends it with [`FlowError::Failed`] (the `errorCode`/`errorMessage`
//!   of the registration state); `disabled` with [`FlowError::Disabled`];
//! * `408`, `429` and `5xx`, and transport failures, repeat the same request after `Retry-After`
//!   if given, else after an exponential back-off; more than [`FlowConfig::max_retries`] of them
//!   in a row end the flow with [`FlowError::RetriesExhausted`];
//! * any other status ends it with [`FlowError::Rejected`], carrying Azure's error body;
//! * at most [`FlowConfig::max_polls`] polls are sent ([`FlowError::TooManyPolls`]).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use dps_client::device::flow::{RegistrationFlow, Request};
//! use dps_types::{IdScope, RegistrationId};
//!
//! let mut flow = RegistrationFlow::new(
//!     IdScope::new("0ne00000001").unwrap(),
//!     RegistrationId::new("dev-1").unwrap(),
//!     None,
//! );
//! let t0 = Instant::now(); // any instant: the flow only compares the ones it is given
//! assert!(matches!(flow.poll_transmit(t0), Some(Request::Register { .. })));
//! flow.handle_response(202, Some(Duration::from_secs(3)), br#"{"operationId":"op-1","status":"assigning"}"#, t0);
//! assert_eq!(flow.poll_timeout(), Some(t0 + Duration::from_secs(3)));
//! assert!(flow.poll_transmit(t0).is_none()); // too early
//! let t1 = t0 + Duration::from_secs(3);
//! assert!(matches!(flow.poll_transmit(t1), Some(Request::Poll { ref operation_id }) if operation_id == "op-1"));
//! flow.handle_response(200, None, br#"{"operationId":"op-1","status":"assigned","registrationState":
//!     {"registrationId":"dev-1","assignedHub":"hub-a.example.net","deviceId":"dev-1","status":"assigned"}}"#, t1);
//! let result = flow.poll_outcome().unwrap().unwrap();
//! assert_eq!(result.state.assigned_hub.unwrap().as_str(), "hub-a.example.net");
//! ```

use std::time::{Duration, Instant};

use dps_proto::http::{DeviceRegistration, DeviceRegistrationResult, RegistrationOperationStatus};
use dps_types::{IdScope, RegistrationId, RegistrationStatus};
use serde_json::Value;

use crate::error::AzureErrorBody;

/// Tunables of a [`RegistrationFlow`]. The defaults follow the Azure SDKs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowConfig {
    /// Wait before polling when an `assigning` answer carries no `Retry-After` (2 s, as the
    /// .NET, Node and Python SDKs).
    pub default_retry_after: Duration,
    /// Lower bound applied to a server's `Retry-After` (1 s).
    pub min_retry_after: Duration,
    /// Upper bound applied to a server's `Retry-After` (60 s).
    pub max_retry_after: Duration,
    /// Most poll requests sent in one flow, retries included (60).
    pub max_polls: u32,
    /// Most consecutive transient failures (408, 429, 5xx, transport errors) before giving up
    /// (5).
    pub max_retries: u32,
    /// First back-off after a transient failure without `Retry-After` (1 s); doubles per
    /// consecutive failure.
    pub backoff_initial: Duration,
    /// Largest back-off (30 s).
    pub backoff_max: Duration,
    /// Seed for back-off jitter (up to a quarter of the back-off is added). `None` means no
    /// jitter. Give each device its own seed so a fleet does not retry in lockstep.
    pub jitter_seed: Option<u64>,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            default_retry_after: Duration::from_secs(2),
            min_retry_after: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
            max_polls: 60,
            max_retries: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            jitter_seed: None,
        }
    }
}

/// A request the flow wants sent.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Request {
    /// `PUT /{idScope}/registrations/{registrationId}/register` with this body.
    Register {
        /// The body: `{"registrationId":…[,"payload":…]}`.
        body: DeviceRegistration,
    },
    /// `GET /{idScope}/registrations/{registrationId}/operations/{operationId}`.
    Poll {
        /// The operation ID from the register answer, as the service wrote it (not validated:
        /// it is the service's opaque token; transports percent-encode it).
        operation_id: String,
    },
}

/// Why a registration did not end with an assignment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The service tried and failed to assign the device (`status: failed`), e.g. a custom
    /// allocation webhook error (`400207`).
    #[error("{}", failed_text(*error_code, error_message.as_deref()))]
    Failed {
        /// Six-digit code from `registrationState.errorCode`.
        error_code: Option<u32>,
        /// `registrationState.errorMessage`.
        error_message: Option<String>,
    },
    /// The enrollment (or its group) is disabled.
    #[error("the enrollment is disabled")]
    Disabled,
    /// The service refused the request (a 4xx other than 408/429).
    #[error("{}", crate::error::service_text(*status, *error_code, message))]
    Rejected {
        /// HTTP status (or MQTT `$dps/registrations/res/{status}`).
        status: u16,
        /// Six-digit `errorCode` of the error body, if it had one.
        error_code: Option<u32>,
        /// The error body's `message` (or the raw body).
        message: String,
        /// The error body's `trackingId`.
        tracking_id: Option<String>,
    },
    /// Too many consecutive transient failures (throttling, server or transport errors).
    #[error("gave up after {attempts} failed attempts{}", last_status.map(|s| format!(" (last status {s})")).unwrap_or_default())]
    RetriesExhausted {
        /// Consecutive failed attempts.
        attempts: u32,
        /// The last HTTP status, or `None` after a transport error.
        last_status: Option<u16>,
    },
    /// The operation was still `assigning` after [`FlowConfig::max_polls`] polls.
    #[error("still assigning after {polls} polls")]
    TooManyPolls {
        /// Polls sent.
        polls: u32,
    },
    /// The service answered something this flow cannot interpret.
    #[error("unexpected response: {0}")]
    Protocol(String),
}

fn failed_text(code: Option<u32>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!("assignment failed with error {c}: {m}"),
        (Some(c), None) => format!("assignment failed with error {c}"),
        (None, Some(m)) => format!("assignment failed: {m}"),
        (None, None) => "assignment failed".into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Register,
    Poll(String),
}

#[derive(Debug)]
enum State {
    /// `step` may be sent from `at` on (`None`: right away).
    Due { step: Step, at: Option<Instant> },
    /// `step` was handed out; waiting for its response.
    InFlight(Step),
    /// The outcome is (or was) in `outcome`.
    Done,
}

/// One device's registration: register, then poll until a terminal status. See the
/// [module documentation](self) for the calling order and the rules.
#[derive(Debug)]
pub struct RegistrationFlow {
    id_scope: IdScope,
    registration_id: RegistrationId,
    payload: Option<Value>,
    config: FlowConfig,
    state: State,
    outcome: Option<Result<DeviceRegistrationResult, FlowError>>,
    polls: u32,
    failures: u32,
}

impl RegistrationFlow {
    /// A flow with the default [`FlowConfig`]. `payload` is sent as the body's `payload` (custom
    /// allocation data, e.g. `{"modelId":"dtmi:…"}`).
    pub fn new(id_scope: IdScope, registration_id: RegistrationId, payload: Option<Value>) -> Self {
        Self::with_config(id_scope, registration_id, payload, FlowConfig::default())
    }

    /// A flow with explicit tunables.
    pub fn with_config(
        id_scope: IdScope,
        registration_id: RegistrationId,
        payload: Option<Value>,
        config: FlowConfig,
    ) -> Self {
        Self {
            id_scope,
            registration_id,
            payload,
            config,
            state: State::Due {
                step: Step::Register,
                at: None,
            },
            outcome: None,
            polls: 0,
            failures: 0,
        }
    }

    /// The ID scope being registered in.
    pub fn id_scope(&self) -> &IdScope {
        &self.id_scope
    }

    /// The registration ID being registered.
    pub fn registration_id(&self) -> &RegistrationId {
        &self.registration_id
    }

    /// The next request to send, if one is due at `now` and none is in flight.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Request> {
        let due = matches!(self.state, State::Due { at, .. } if at.is_none_or(|at| now >= at));
        if !due {
            return None;
        }
        let State::Due { step, .. } = std::mem::replace(&mut self.state, State::Done) else {
            return None;
        };
        let request = match &step {
            Step::Register => Request::Register {
                body: DeviceRegistration {
                    registration_id: Some(self.registration_id.to_string()),
                    payload: self.payload.clone(),
                    ..DeviceRegistration::default()
                },
            },
            Step::Poll(operation_id) => {
                self.polls += 1;
                Request::Poll {
                    operation_id: operation_id.clone(),
                }
            }
        };
        self.state = State::InFlight(step);
        Some(request)
    }

    /// When the next request becomes due, while the flow is waiting between requests. `None`
    /// when a request is due now (call [`poll_transmit`](Self::poll_transmit)), in flight, or
    /// the flow is over.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Due { at, .. } => at,
            _ => None,
        }
    }

    /// The result, once: `Some(Ok(_))` when assigned, `Some(Err(_))` when the flow failed,
    /// `None` while it is running (or after the outcome was taken).
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<Result<DeviceRegistrationResult, FlowError>> {
        self.outcome.take()
    }

    /// True once the flow has ended (whether or not the outcome was taken).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feeds the response to the request in flight: its HTTP status (or MQTT status), the
    /// `Retry-After` it carried, and its body. Ignored if no request is in flight.
    pub fn handle_response(
        &mut self,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
        now: Instant,
    ) {
        let Some(step) = self.take_in_flight() else {
            return;
        };
        match status {
            200..=299 => self.on_success(step, retry_after, body, now),
            408 | 429 | 500..=599 => self.on_transient(step, Some(status), retry_after, now),
            _ => {
                let e = AzureErrorBody::parse(body);
                self.finish(Err(FlowError::Rejected {
                    status,
                    error_code: e.error_code,
                    message: e.message,
                    tracking_id: e.tracking_id,
                }));
            }
        }
    }

    /// Reports that the request in flight got no response (connection reset, timeout). It is
    /// retried like a `503` without `Retry-After`. Ignored if no request is in flight.
    pub fn handle_transport_error(&mut self, now: Instant) {
        let Some(step) = self.take_in_flight() else {
            return;
        };
        self.on_transient(step, None, None, now);
    }

    /// Moves the in-flight step out, leaving `Done` in its place; any other state is kept (a
    /// response without a request is a driver bug and is ignored).
    fn take_in_flight(&mut self) -> Option<Step> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::InFlight(step) => Some(step),
            other => {
                self.state = other;
                None
            }
        }
    }

    fn on_success(&mut self, step: Step, retry_after: Option<Duration>, body: &[u8], now: Instant) {
        self.failures = 0;
        let op: RegistrationOperationStatus = match serde_json::from_slice(body) {
            Ok(op) => op,
            Err(e) => {
                return self.finish(Err(FlowError::Protocol(format!(
                    "invalid registration status body: {e}"
                ))));
            }
        };
        match op.status {
            RegistrationStatus::Assigned => match op.registration_state {
                Some(r) if r.state.assigned_hub.is_some() && r.state.device_id.is_some() => {
                    self.finish(Ok(r));
                }
                _ => self.finish(Err(FlowError::Protocol(
                    "status assigned without registrationState.assignedHub and deviceId".into(),
                ))),
            },
            RegistrationStatus::Failed => {
                let (error_code, error_message) = op
                    .registration_state
                    .map(|r| (r.state.error_code, r.state.error_message))
                    .unwrap_or_default();
                self.finish(Err(FlowError::Failed {
                    error_code,
                    error_message,
                }));
            }
            RegistrationStatus::Disabled => self.finish(Err(FlowError::Disabled)),
            RegistrationStatus::Assigning | RegistrationStatus::Unassigned => {
                let operation_id = match (op.operation_id, step) {
                    (id, _) if !id.is_empty() => id,
                    (_, Step::Poll(id)) => id,
                    (_, Step::Register) => {
                        return self.finish(Err(FlowError::Protocol(
                            "the register answer has no operationId".into(),
                        )));
                    }
                };
                let wait = retry_after.map_or(self.config.default_retry_after, |d| self.clamp(d));
                self.schedule(Step::Poll(operation_id), now + wait);
            }
        }
    }

    fn on_transient(
        &mut self,
        step: Step,
        status: Option<u16>,
        retry_after: Option<Duration>,
        now: Instant,
    ) {
        self.failures += 1;
        if self.failures > self.config.max_retries {
            return self.finish(Err(FlowError::RetriesExhausted {
                attempts: self.failures,
                last_status: status,
            }));
        }
        let wait = match retry_after {
            Some(d) => self.clamp(d),
            None => self.backoff(self.failures),
        };
        self.schedule(step, now + wait);
    }

    fn schedule(&mut self, step: Step, at: Instant) {
        if matches!(step, Step::Poll(_)) && self.polls >= self.config.max_polls {
            return self.finish(Err(FlowError::TooManyPolls { polls: self.polls }));
        }
        self.state = State::Due { step, at: Some(at) };
    }

    fn finish(&mut self, outcome: Result<DeviceRegistrationResult, FlowError>) {
        self.state = State::Done;
        self.outcome = Some(outcome);
    }

    fn clamp(&self, d: Duration) -> Duration {
        d.clamp(self.config.min_retry_after, self.config.max_retry_after)
    }

    /// `backoff_initial * 2^(n-1)`, capped at `backoff_max`, plus up to a quarter of it as
    /// jitter when seeded.
    fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        let base = self
            .config
            .backoff_initial
            .saturating_mul(factor)
            .min(self.config.backoff_max);
        let Some(seed) = self.config.jitter_seed else {
            return base;
        };
        let quarter_ms = u64::try_from(base.as_millis() / 4).unwrap_or(u64::MAX);
        let jitter_ms = splitmix64(seed ^ u64::from(n)) % (quarter_ms + 1);
        base + Duration::from_millis(jitter_ms)
    }
}

/// A small, well-mixed hash (splitmix64's finaliser) for deterministic jitter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ASSIGNING: &[u8] = br#"{"operationId":"5.abc.def","status":"assigning"}"#;
    const POLL_ASSIGNING: &[u8] = br#"{"operationId":"5.abc.def","status":"assigning","registrationState":{"registrationId":"dev-1","status":"assigning"}}"#;
    const ASSIGNED: &[u8] = br#"{"operationId":"5.abc.def","status":"assigned","registrationState":{"registrationId":"dev-1","createdDateTimeUtc":"2022-08-31T22:02:50.5163352Z","assignedHub":"hub-a.example.net","deviceId":"dev-1","status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2022-08-31T22:02:50.7370676Z","etag":"IjY5MDAzNTUyLTAwMDAtMDMwMC0wMDAwLTYzMGZkYThhMDAwMCI="}}"#;

    fn flow() -> RegistrationFlow {
        RegistrationFlow::new(
            IdScope::new("0ne00000001").unwrap(),
            RegistrationId::new("dev-1").unwrap(),
            None,
        )
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// What a scripted server answers: (status, retry-after seconds, body), or `None` for a
    /// transport error.
    type Answer = Option<(u16, Option<u64>, &'static [u8])>;

    /// Drives `flow` in simulated time against scripted answers, recording each request and
    /// the time it was sent. Fails the test if the flow neither ends nor asks for anything, or
    /// runs past the script.
    fn drive(
        flow: &mut RegistrationFlow,
        script: &[Answer],
    ) -> (
        Vec<(Duration, Request)>,
        Result<DeviceRegistrationResult, FlowError>,
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut sent = Vec::new();
        let mut answers = script.iter();
        for _ in 0..1000 {
            if let Some(outcome) = flow.poll_outcome() {
                assert!(answers.next().is_none(), "flow ended before the script did");
                assert!(flow.poll_transmit(now + secs(3600)).is_none());
                return (sent, outcome);
            }
            if let Some(req) = flow.poll_transmit(now) {
                sent.push((now - t0, req));
                match answers
                    .next()
                    .expect("flow asked for more than the script holds")
                {
                    Some((status, ra, body)) => {
                        flow.handle_response(*status, ra.map(secs), body, now)
                    }
                    None => flow.handle_transport_error(now),
                }
                continue;
            }
            now = flow
                .poll_timeout()
                .expect("flow is stuck: nothing due, no timer");
        }
        panic!("flow did not settle");
    }

    fn is_register(r: &Request) -> bool {
        matches!(r, Request::Register { .. })
    }

    fn is_poll(r: &Request) -> bool {
        matches!(r, Request::Poll { operation_id } if operation_id == "5.abc.def")
    }

    #[test]
    fn register_then_poll_until_assigned() {
        let mut f = flow();
        let (sent, out) = drive(
            &mut f,
            &[
                Some((202, Some(3), ASSIGNING)),
                Some((202, None, POLL_ASSIGNING)),
                Some((200, None, ASSIGNED)),
            ],
        );
        let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_secs()).collect();
        assert_eq!(times, [0, 3, 5], "retry-after 3, then the 2 s default");
        assert!(is_register(&sent[0].1));
        assert!(is_poll(&sent[1].1) && is_poll(&sent[2].1));
        let r = out.unwrap();
        assert_eq!(r.state.device_id.as_deref(), Some("dev-1"));
        assert_eq!(r.state.status, RegistrationStatus::Assigned);
        assert!(f.is_done());
        assert!(f.poll_outcome().is_none(), "the outcome is handed out once");
    }

    #[test]
    fn register_body_carries_id_and_payload() {
        let mut f = RegistrationFlow::new(
            IdScope::new("0ne00000001").unwrap(),
            RegistrationId::new("Dev-1").unwrap(),
            Some(serde_json::json!({"modelId": "dtmi:com:example:Thermostat;1"})),
        );
        let Some(Request::Register { body }) = f.poll_transmit(Instant::now()) else {
            panic!("expected register");
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"registrationId":"Dev-1","payload":{"modelId":"dtmi:com:example:Thermostat;1"}}"#
        );
        assert!(
            f.poll_transmit(Instant::now()).is_none(),
            "one request at a time"
        );
        assert_eq!(
            f.poll_timeout(),
            None,
            "nothing to wait for while in flight"
        );
    }

    #[test]
    fn retry_after_is_clamped() {
        let (sent, out) = drive(
            &mut flow(),
            &[
                Some((202, Some(0), ASSIGNING)),
                Some((202, Some(600), POLL_ASSIGNING)),
                Some((200, None, ASSIGNED)),
            ],
        );
        let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_secs()).collect();
        assert_eq!(times, [0, 1, 61]);
        assert!(out.is_ok());
    }

    #[test]
    fn assigned_on_register_ends_at_once() {
        let (sent, out) = drive(&mut flow(), &[Some((200, None, ASSIGNED))]);
        assert_eq!(sent.len(), 1);
        assert!(out.is_ok());
    }

    #[test]
    fn failed_carries_error_code_and_message() {
        let failed: &[u8] = br#"{"operationId":"5.abc.def","status":"failed","registrationState":{"registrationId":"dev-1","status":"failed","errorCode":400207,"errorMessage":"Custom allocation failed with status code: 400"}}"#;
        let (_, out) = drive(
            &mut flow(),
            &[Some((202, None, ASSIGNING)), Some((200, None, failed))],
        );
        let err = out.unwrap_err();
        assert_eq!(
            err,
            FlowError::Failed {
                error_code: Some(400_207),
                error_message: Some("Custom allocation failed with status code: 400".into()),
            }
        );
        assert_eq!(
            err.to_string(),
            "assignment failed with error 400207: Custom allocation failed with status code: 400"
        );
    }

    #[test]
    fn disabled() {
        let disabled: &[u8] = br#"{"operationId":"","status":"disabled","registrationState":{"registrationId":"dev-1","status":"disabled"}}"#;
        let (_, out) = drive(
            &mut flow(),
            &[Some((202, None, ASSIGNING)), Some((200, None, disabled))],
        );
        assert_eq!(out.unwrap_err(), FlowError::Disabled);
    }

    #[test]
    fn client_errors_carry_the_azure_body() {
        let body: &[u8] = br#"{"errorCode":401002,"trackingId":"t-1","message":"Unauthorized","timestampUtc":"2020-04-10T05:24:22.4718526Z"}"#;
        let (sent, out) = drive(&mut flow(), &[Some((401, None, body))]);
        assert_eq!(sent.len(), 1);
        let err = out.unwrap_err();
        assert_eq!(
            err,
            FlowError::Rejected {
                status: 401,
                error_code: Some(401_002),
                message: "Unauthorized".into(),
                tracking_id: Some("t-1".into()),
            }
        );
        assert_eq!(
            err.to_string(),
            "service error 401 (errorCode 401002): Unauthorized"
        );
        let (_, out) = drive(&mut flow(), &[Some((404, None, b"no such scope"))]);
        assert_eq!(
            out.unwrap_err(),
            FlowError::Rejected {
                status: 404,
                error_code: None,
                message: "no such scope".into(),
                tracking_id: None,
            }
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retried() {
        let (sent, out) = drive(
            &mut flow(),
            &[
                Some((429, Some(7), b"{}")),
                Some((503, None, b"")),
                None,
                Some((202, None, ASSIGNING)),
                Some((500, None, b"")),
                Some((200, None, ASSIGNED)),
            ],
        );
        let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_secs()).collect();
        // 429 honours retry-after 7; then back-off 2 s, 4 s (2nd and 3rd consecutive failures);
        // success resets the count: poll after 2 s, the 500 backs off 1 s.
        assert_eq!(times, [0, 7, 9, 13, 15, 16]);
        assert!(sent[..4].iter().all(|(_, r)| is_register(r)));
        assert!(sent[4..].iter().all(|(_, r)| is_poll(r)));
        assert!(out.is_ok());
    }

    #[test]
    fn retries_are_bounded() {
        let mut f = RegistrationFlow::with_config(
            IdScope::new("0ne00000001").unwrap(),
            RegistrationId::new("dev-1").unwrap(),
            None,
            FlowConfig {
                max_retries: 2,
                ..FlowConfig::default()
            },
        );
        let (sent, out) = drive(
            &mut f,
            &[
                Some((503, None, b"")),
                Some((503, None, b"")),
                Some((429, Some(1), b"")),
            ],
        );
        assert_eq!(sent.len(), 3);
        assert_eq!(
            out.unwrap_err(),
            FlowError::RetriesExhausted {
                attempts: 3,
                last_status: Some(429)
            }
        );
    }

    #[test]
    fn polls_are_bounded() {
        let mut f = RegistrationFlow::with_config(
            IdScope::new("0ne00000001").unwrap(),
            RegistrationId::new("dev-1").unwrap(),
            None,
            FlowConfig {
                max_polls: 3,
                ..FlowConfig::default()
            },
        );
        let (sent, out) = drive(
            &mut f,
            &[
                Some((202, None, ASSIGNING)),
                Some((202, None, POLL_ASSIGNING)),
                Some((503, None, b"")),
                Some((202, None, POLL_ASSIGNING)),
            ],
        );
        assert_eq!(
            sent.len(),
            4,
            "register + 3 polls, the retry counted as a poll"
        );
        assert_eq!(out.unwrap_err(), FlowError::TooManyPolls { polls: 3 });
    }

    #[test]
    fn malformed_answers_are_protocol_errors() {
        for (status, body) in [
            (202u16, &b"not json"[..]),
            (202, br#"{"operationId":"","status":"assigning"}"#),
            (200, br#"{"operationId":"x","status":"assigned"}"#),
            (
                200,
                br#"{"operationId":"x","status":"assigned","registrationState":{"registrationId":"dev-1","status":"assigned","deviceId":"dev-1"}}"#,
            ),
        ] {
            let (_, out) = drive(&mut flow(), &[Some((status, None, body))]);
            assert!(
                matches!(out, Err(FlowError::Protocol(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn poll_keeps_the_operation_id_when_the_answer_omits_it() {
        let (sent, out) = drive(
            &mut flow(),
            &[
                Some((202, None, ASSIGNING)),
                Some((202, None, br#"{"operationId":"","status":"assigning"}"#)),
                Some((200, None, ASSIGNED)),
            ],
        );
        assert!(is_poll(&sent[2].1));
        assert!(out.is_ok());
    }

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let cfg = |seed| FlowConfig {
            jitter_seed: Some(seed),
            ..FlowConfig::default()
        };
        let f = |seed| {
            RegistrationFlow::with_config(
                IdScope::new("0ne00000001").unwrap(),
                RegistrationId::new("dev-1").unwrap(),
                None,
                cfg(seed),
            )
        };
        for n in 1..8 {
            let base = flow().backoff(n);
            let a = f(42).backoff(n);
            assert_eq!(a, f(42).backoff(n));
            assert!(a >= base && a <= base + base / 4, "{n}: {a:?} vs {base:?}");
        }
        assert_eq!(flow().backoff(30), secs(30));
        let spread: std::collections::HashSet<_> = (0..16).map(|s| f(s).backoff(3)).collect();
        assert!(spread.len() > 1, "different seeds spread the retries");
    }

    #[test]
    fn stray_input_is_ignored() {
        let mut f = flow();
        f.handle_response(200, None, ASSIGNED, Instant::now());
        f.handle_transport_error(Instant::now());
        assert!(f.poll_outcome().is_none());
        assert!(matches!(
            f.poll_transmit(Instant::now()),
            Some(Request::Register { .. })
        ));
    }
}
