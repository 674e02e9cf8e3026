//! Routing of the REST paths of both APIs. Fixed segments match ASCII case-insensitively (the
//! Node service SDK sends `/enrollmentgroups/`), identifiers are percent-decoded exactly once,
//! and a known path with the wrong method is a 405, not a 404.

use dps_types::Rejection;
use percent_encoding::percent_decode_str;

/// HTTP methods the APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// PUT
    Put,
    /// POST
    Post,
    /// DELETE
    Delete,
    /// Anything else.
    Other,
}

impl Method {
    /// From the method token.
    pub fn parse(s: &str) -> Self {
        match s {
            "GET" => Self::Get,
            "PUT" => Self::Put,
            "POST" => Self::Post,
            "DELETE" => Self::Delete,
            _ => Self::Other,
        }
    }
}

/// Which collection a service-API path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// `/enrollments`
    Enrollments,
    /// `/enrollmentGroups`
    EnrollmentGroups,
}

/// A decoded request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `PUT /{idScope}/registrations/{registrationId}/register`
    DeviceRegister {
        /// ID scope, decoded.
        id_scope: String,
        /// Registration ID, decoded.
        registration_id: String,
    },
    /// `GET /{idScope}/registrations/{registrationId}/operations/{operationId}`
    DeviceOperationStatus {
        /// ID scope, decoded.
        id_scope: String,
        /// Registration ID, decoded.
        registration_id: String,
        /// Operation ID, decoded.
        operation_id: String,
    },
    /// `POST /{idScope}/registrations/{registrationId}`
    DeviceRegistrationStatus {
        /// ID scope, decoded.
        id_scope: String,
        /// Registration ID, decoded.
        registration_id: String,
    },
    /// `PUT|GET|DELETE /enrollments/{id}` or `/enrollmentGroups/{id}`
    Record {
        /// Which collection.
        collection: Collection,
        /// Decoded ID.
        id: String,
        /// The method.
        method: Method,
    },
    /// `POST /{collection}/{id}/attestationmechanism`
    AttestationMechanism {
        /// Which collection.
        collection: Collection,
        /// Decoded ID.
        id: String,
    },
    /// `POST /{collection}` (bulk)
    Bulk {
        /// Which collection.
        collection: Collection,
    },
    /// `POST /{collection}/query`
    Query {
        /// Which collection.
        collection: Collection,
    },
    /// `GET|DELETE /registrations/{id}`
    Registration {
        /// Decoded registration ID.
        id: String,
        /// The method.
        method: Method,
    },
    /// `GET /metering/operations`: the scope's operation counters (a dps-rs extension).
    Metering,
    /// `POST /registrations/{enrollmentGroupId}/query`
    RegistrationQuery {
        /// Decoded group ID.
        group_id: String,
    },
}

impl Route {
    /// True for the device API (authorised by device credentials, scope in the path).
    pub fn is_device(&self) -> bool {
        matches!(
            self,
            Self::DeviceRegister { .. }
                | Self::DeviceOperationStatus { .. }
                | Self::DeviceRegistrationStatus { .. }
        )
    }
}

/// Longest path accepted (bytes, before decoding).
pub const MAX_PATH_LEN: usize = 2048;

fn decode(seg: &str) -> Result<String, Rejection> {
    if seg.is_empty() {
        return Err(Rejection::PathNotFound);
    }
    percent_decode_str(seg)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            Rejection::BadRequest("a path segment is not valid percent-encoded UTF-8".into())
        })
}

fn is(seg: &str, word: &str) -> bool {
    seg.eq_ignore_ascii_case(word)
}

fn collection(seg: &str) -> Option<Collection> {
    if is(seg, "enrollments") {
        Some(Collection::Enrollments)
    } else if is(seg, "enrollmentGroups") {
        Some(Collection::EnrollmentGroups)
    } else {
        None
    }
}

fn only(method: Method, allowed: Method, route: Route) -> Result<Route, Rejection> {
    if method == allowed {
        Ok(route)
    } else {
        Err(Rejection::MethodNotAllowed)
    }
}

/// Decodes a method and a raw path (without the query string).
pub fn route(method: Method, raw_path: &str) -> Result<Route, Rejection> {
    if raw_path.len() > MAX_PATH_LEN {
        return Err(Rejection::BadRequest("the request path is too long".into()));
    }
    let path = raw_path.strip_prefix('/').ok_or(Rejection::PathNotFound)?;
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        [c] => match collection(c) {
            Some(collection) => only(method, Method::Post, Route::Bulk { collection }),
            None => Err(Rejection::PathNotFound),
        },
        [c, q] if collection(c).is_some() && is(q, "query") && method == Method::Post => {
            Ok(Route::Query {
                collection: collection(c).ok_or(Rejection::PathNotFound)?,
            })
        }
        [c, id] if collection(c).is_some() => {
            let collection = collection(c).ok_or(Rejection::PathNotFound)?;
            match method {
                Method::Get | Method::Put | Method::Delete => Ok(Route::Record {
                    collection,
                    id: decode(id)?,
                    method,
                }),
                _ => Err(Rejection::MethodNotAllowed),
            }
        }
        [c, id, a] if collection(c).is_some() && is(a, "attestationmechanism") => only(
            method,
            Method::Post,
            Route::AttestationMechanism {
                collection: collection(c).ok_or(Rejection::PathNotFound)?,
                id: decode(id)?,
            },
        ),
        [m, o] if is(m, "metering") && is(o, "operations") => {
            only(method, Method::Get, Route::Metering)
        }
        [r, id] if is(r, "registrations") => match method {
            Method::Get | Method::Delete => Ok(Route::Registration {
                id: decode(id)?,
                method,
            }),
            _ => Err(Rejection::MethodNotAllowed),
        },
        [r, gid, q] if is(r, "registrations") && is(q, "query") => only(
            method,
            Method::Post,
            Route::RegistrationQuery {
                group_id: decode(gid)?,
            },
        ),
        [scope, r, rid] if is(r, "registrations") => only(
            method,
            Method::Post,
            Route::DeviceRegistrationStatus {
                id_scope: decode(scope)?,
                registration_id: decode(rid)?,
            },
        ),
        [scope, r, rid, reg] if is(r, "registrations") && is(reg, "register") => only(
            method,
            Method::Put,
            Route::DeviceRegister {
                id_scope: decode(scope)?,
                registration_id: decode(rid)?,
            },
        ),
        [scope, r, rid, ops, op] if is(r, "registrations") && is(ops, "operations") => only(
            method,
            Method::Get,
            Route::DeviceOperationStatus {
                id_scope: decode(scope)?,
                registration_id: decode(rid)?,
                operation_id: decode(op)?,
            },
        ),
        _ => Err(Rejection::PathNotFound),
    }
}

/// Finds a query parameter (first occurrence), percent-decoded (`+` as space). Invalid
/// encodings are a 400.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, Rejection> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.eq_ignore_ascii_case(name) {
            let v = v.replace('+', " ");
            return percent_decode_str(&v)
                .decode_utf8()
                .map(|s| Some(s.into_owned()))
                .map_err(|_| {
                    Rejection::BadRequest(format!(
                        "query parameter {name} is not valid percent-encoded UTF-8"
                    ))
                });
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Method::*;

    #[test]
    fn device_paths() {
        assert_eq!(
            route(Put, "/0ne00000001/registrations/dev-1/register").unwrap(),
            Route::DeviceRegister {
                id_scope: "0ne00000001".into(),
                registration_id: "dev-1".into()
            }
        );
        assert_eq!(
            route(Get, "/0ne00000001/registrations/dev%3A1/operations/5.ab.cd").unwrap(),
            Route::DeviceOperationStatus {
                id_scope: "0ne00000001".into(),
                registration_id: "dev:1".into(),
                operation_id: "5.ab.cd".into()
            }
        );
        assert!(matches!(
            route(Post, "/0ne1/registrations/d1").unwrap(),
            Route::DeviceRegistrationStatus { .. }
        ));
        assert_eq!(
            route(Get, "/0ne1/registrations/d1/register"),
            Err(Rejection::MethodNotAllowed)
        );
        assert_eq!(
            route(Put, "/0ne1/REGISTRATIONS/d1/Register").map(|r| r.is_device()),
            Ok(true)
        );
    }

    #[test]
    fn service_paths_case_insensitive() {
        assert!(matches!(
            route(Post, "/enrollmentgroups/g1/attestationmechanism").unwrap(),
            Route::AttestationMechanism {
                collection: Collection::EnrollmentGroups,
                ..
            }
        ));
        assert!(matches!(
            route(Post, "/enrollments/query").unwrap(),
            Route::Query {
                collection: Collection::Enrollments
            }
        ));
        assert!(matches!(
            route(Get, "/enrollments/query").unwrap(),
            Route::Record { .. }
        ));
        assert!(matches!(
            route(Post, "/enrollmentGroups").unwrap(),
            Route::Bulk { .. }
        ));
        assert!(matches!(
            route(Post, "/registrations/g1/query").unwrap(),
            Route::RegistrationQuery { .. }
        ));
        assert!(matches!(
            route(Delete, "/registrations/d1").unwrap(),
            Route::Registration { .. }
        ));
        assert_eq!(
            route(Post, "/enrollments/e1"),
            Err(Rejection::MethodNotAllowed)
        );
        assert_eq!(route(Get, "/nothing/here"), Err(Rejection::PathNotFound));
        assert_eq!(route(Get, "/enrollments/"), Err(Rejection::PathNotFound));
        assert_eq!(route(Get, ""), Err(Rejection::PathNotFound));
    }

    #[test]
    fn bad_percent_encoding_is_400() {
        assert!(matches!(
            route(Get, "/enrollments/%ff%fe"),
            Err(Rejection::BadRequest(_))
        ));
        assert!(matches!(
            route(Get, &format!("/enrollments/{}", "a".repeat(3000))),
            Err(Rejection::BadRequest(_))
        ));
    }

    #[test]
    fn query_params() {
        let q = Some("api-version=2019-03-31&forceRegistration=true");
        assert_eq!(
            query_param(q, "api-version").unwrap().as_deref(),
            Some("2019-03-31")
        );
        assert_eq!(
            query_param(q, "forceregistration").unwrap().as_deref(),
            Some("true")
        );
        assert_eq!(query_param(q, "x").unwrap(), None);
        assert!(query_param(Some("api-version=%ff"), "api-version").is_err());
    }
}
