//! Service API over HTTPS: enrollments, groups, bulk, queries, registration records, metering.

use axum::http::StatusCode;
use dps_proto::WireError;
use dps_proto::api_version;
use dps_proto::http::service::{
    BulkItemError, BulkItemId, BulkMode as WireBulkMode, BulkRequest, BulkResult, Query,
    decode_continuation, encode_continuation, item_type, page_size,
};
use dps_proto::http::{Collection, Method, Route, query_param};
use dps_service::admin::{Admin, BulkMode, Caller, Record};
use dps_service::{HubRegistry, Right, Service};
use dps_store::Store;
use dps_types::{EnrollmentGroup, IndividualEnrollment, Rejection};
use serde::Serialize;

use super::{Ctx, Reply};

fn right_for(route: &Route) -> Right {
    match route {
        Route::Record {
            method: Method::Get,
            ..
        }
        | Route::Query { .. } => Right::EnrollmentRead,
        Route::Record { .. } | Route::Bulk { .. } | Route::AttestationMechanism { .. } => {
            Right::EnrollmentWrite
        }
        Route::Registration {
            method: Method::Delete,
            ..
        } => Right::RegistrationStatusWrite,
        Route::Registration { .. } | Route::RegistrationQuery { .. } => {
            Right::RegistrationStatusRead
        }
        _ => Right::ServiceConfig,
    }
}

fn paged<T: Serialize>(
    items: &[T],
    next: Option<String>,
    kind: &str,
    size: usize,
) -> Result<Reply, Rejection> {
    let mut r = Reply::json(StatusCode::OK, &items)?
        .header("x-ms-item-type", kind)
        .header("x-ms-max-item-count", size.to_string());
    if let Some(n) = next {
        r = r.header("x-ms-continuation", encode_continuation(&n));
    }
    Ok(r)
}

pub(crate) async fn handle<S: Store, H: HubRegistry>(
    svc: &Service<S, H>,
    route: Route,
    ctx: &Ctx<'_>,
    uri_host: Option<&str>,
) -> Result<Reply, Rejection> {
    api_version::service(query_param(ctx.query, "api-version")?.as_deref())?;
    let host = ctx.header("host")?.or(uri_host);
    let caller = Caller {
        host,
        authorization: ctx.header("authorization").unwrap_or(None),
    };
    let admin = svc.admin(caller, right_for(&route))?;
    let if_match = ctx.header("if-match")?;
    match route {
        Route::Record {
            collection: Collection::Enrollments,
            id,
            method,
        } => record::<IndividualEnrollment, S, H>(&admin, &id, method, ctx, if_match).await,
        Route::Record {
            collection: Collection::EnrollmentGroups,
            id,
            method,
        } => record::<EnrollmentGroup, S, H>(&admin, &id, method, ctx, if_match).await,
        Route::AttestationMechanism { collection, id } => {
            let a = match collection {
                Collection::Enrollments => admin.attestation::<IndividualEnrollment>(&id).await?,
                Collection::EnrollmentGroups => admin.attestation::<EnrollmentGroup>(&id).await?,
            };
            Reply::json(StatusCode::OK, &a)
        }
        Route::Query { collection } => {
            Query::decode(&ctx.body)?;
            let size = page_size(ctx.header("x-ms-max-item-count")?)?;
            let after = ctx
                .header("x-ms-continuation")?
                .map(decode_continuation)
                .transpose()?;
            match collection {
                Collection::Enrollments => {
                    let p = admin
                        .query::<IndividualEnrollment>(after.as_deref(), size)
                        .await?;
                    paged(&p.items, p.next_after, item_type::ENROLLMENT, size)
                }
                Collection::EnrollmentGroups => {
                    let p = admin
                        .query::<EnrollmentGroup>(after.as_deref(), size)
                        .await?;
                    paged(&p.items, p.next_after, item_type::ENROLLMENT_GROUP, size)
                }
            }
        }
        Route::Bulk { collection } => match collection {
            Collection::Enrollments => {
                bulk::<IndividualEnrollment, S, H>(
                    &admin,
                    ctx,
                    "enrollments",
                    BulkItemId::RegistrationId,
                )
                .await
            }
            Collection::EnrollmentGroups => {
                bulk::<EnrollmentGroup, S, H>(
                    &admin,
                    ctx,
                    "enrollmentGroups",
                    BulkItemId::EnrollmentGroupId,
                )
                .await
            }
        },
        Route::Registration {
            id,
            method: Method::Delete,
        } => {
            admin.delete_registration(&id, if_match).await?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        Route::Registration { id, .. } => {
            Reply::json(StatusCode::OK, &admin.registration(&id).await?)
        }
        Route::RegistrationQuery { group_id } => {
            let size = page_size(ctx.header("x-ms-max-item-count")?)?;
            let after = ctx
                .header("x-ms-continuation")?
                .map(decode_continuation)
                .transpose()?;
            let p = admin
                .query_registrations(&group_id, after.as_deref(), size)
                .await?;
            paged(&p.items, p.next_after, item_type::DEVICE_REGISTRATION, size)
        }
        Route::Metering => {
            let counts = admin.operation_counts().await?;
            let total: u64 = counts.values().sum();
            let body = serde_json::json!({
                "idScope": admin.scope().id_scope.as_str(),
                "operations": counts,
                "total": total,
            });
            Reply::json(StatusCode::OK, &body)
        }
        _ => Err(Rejection::PathNotFound),
    }
}

async fn record<R: Record, S: Store, H: HubRegistry>(
    admin: &Admin<'_, S, H>,
    id: &str,
    method: Method,
    ctx: &Ctx<'_>,
    if_match: Option<&str>,
) -> Result<Reply, Rejection> {
    match method {
        Method::Put => {
            let r: R = admin.put(id, ctx.json_body()?, if_match).await?;
            Reply::json(StatusCode::OK, &r)
        }
        Method::Delete => {
            admin.delete::<R>(id, if_match).await?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        _ => {
            // Individual enrollments carry the device's registration state.
            let v = if R::ID_FIELD == "registrationId" {
                serde_json::to_value(admin.get_enrollment(id).await?)
            } else {
                serde_json::to_value(admin.get::<R>(id).await?)
            };
            Reply::json(StatusCode::OK, &v.map_err(|_| Rejection::Internal)?)
        }
    }
}

async fn bulk<R: Record, S: Store, H: HubRegistry>(
    admin: &Admin<'_, S, H>,
    ctx: &Ctx<'_>,
    field: &str,
    id: fn(String) -> BulkItemId,
) -> Result<Reply, Rejection> {
    let req = BulkRequest::decode(&ctx.body, field)?;
    let mode = match req.mode {
        WireBulkMode::Create => BulkMode::Create,
        WireBulkMode::Update => BulkMode::Update,
        WireBulkMode::UpdateIfMatchEtag => BulkMode::UpdateIfMatchEtag,
        WireBulkMode::Delete => BulkMode::Delete,
    };
    let failures = admin.bulk::<R>(mode, req.items).await?;
    let errors: Vec<BulkItemError> = failures
        .into_iter()
        .map(|f| {
            let w = WireError::from_rejection(&f.rejection);
            BulkItemError {
                id: id(f.id),
                error_code: w.error_code,
                error_status: f.rejection.to_string(),
            }
        })
        .collect();
    Reply::json(
        StatusCode::OK,
        &BulkResult {
            is_successful: errors.is_empty(),
            errors,
        },
    )
}
