//! Device API over HTTPS: register, poll, status lookup.

use axum::http::StatusCode;
use dps_proto::api_version;
use dps_proto::http::{DeviceRegistration, RegistrationOperationStatus, Route, query_param};
use dps_service::{DeviceCredential, HubRegistry, RegisterRequest, Service};
use dps_store::Store;
use dps_types::Rejection;

use super::{Ctx, Reply};

/// The device's credential: a SAS token in `Authorization`, else the TLS client chain (X.509
/// devices send no `Authorization`), else none.
fn credential<'a>(ctx: &'a Ctx<'_>) -> Result<DeviceCredential<'a>, Rejection> {
    match ctx.header("authorization") {
        Ok(Some(v)) => Ok(DeviceCredential::Sas(v)),
        Ok(None) if !ctx.peer.certs.is_empty() => Ok(DeviceCredential::X509(&ctx.peer.certs)),
        Ok(None) => Ok(DeviceCredential::None),
        Err(_) => Err(Rejection::Unauthorized(
            "authorization header is not ASCII".into(),
        )),
    }
}

pub(crate) async fn handle<S: Store, H: HubRegistry>(
    svc: &Service<S, H>,
    route: Route,
    ctx: &Ctx<'_>,
) -> Result<Reply, Rejection> {
    let version = api_version::device(query_param(ctx.query, "api-version")?.as_deref())?;
    let retry_after = svc.options().retry_after_secs.to_string();
    match route {
        Route::DeviceRegister {
            id_scope,
            registration_id,
        } => {
            let body = DeviceRegistration::decode(&ctx.body)?;
            body.check_id(&registration_id)?;
            let op = svc
                .register(RegisterRequest {
                    id_scope: &id_scope,
                    registration_id: &registration_id,
                    credential: credential(ctx)?,
                    payload: body.payload,
                    legacy_api: version.is_legacy_sticky(),
                    source: ctx.peer.addr.map(|a| a.ip()),
                })
                .await?;
            Ok(Reply::json(
                StatusCode::ACCEPTED,
                &RegistrationOperationStatus::accepted(&op),
            )?
            .header("retry-after", retry_after))
        }
        Route::DeviceOperationStatus {
            id_scope,
            registration_id,
            operation_id,
        } => {
            let op = svc
                .operation_status(&id_scope, &registration_id, &operation_id, credential(ctx)?)
                .await?;
            let (code, body) = RegistrationOperationStatus::poll(&op);
            let status = StatusCode::from_u16(code).map_err(|_| Rejection::Internal)?;
            let reply = Reply::json(status, &body)?;
            Ok(if code == 202 {
                reply.header("retry-after", retry_after)
            } else {
                reply
            })
        }
        Route::DeviceRegistrationStatus {
            id_scope,
            registration_id,
        } => {
            let body = DeviceRegistration::decode(&ctx.body)?;
            body.check_id(&registration_id)?;
            let state = svc
                .registration_status(&id_scope, &registration_id, credential(ctx)?)
                .await?;
            Reply::json(StatusCode::OK, &state)
        }
        _ => Err(Rejection::PathNotFound),
    }
}
