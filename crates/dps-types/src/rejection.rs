//! Why the service refused a request, in domain terms. The mapping to HTTP statuses, six-digit
//! error codes and MQTT topics lives once, in `dps-proto`.

/// A refusal the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Bad, expired or missing credentials, or no enrollment that accepts them. The reason is
    /// for operators (logs); devices only see "Unauthorized".
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A valid caller lacks the right for this operation.
    #[error("the shared access policy lacks the {0} right")]
    Forbidden(&'static str),
    /// The ID scope (or service host) is not served here.
    #[error("id scope not found")]
    ScopeNotFound,
    /// No resource lives at this path.
    #[error("no resource at this path")]
    PathNotFound,
    /// No such individual enrollment.
    #[error("enrollment not found")]
    EnrollmentNotFound,
    /// No such enrollment group.
    #[error("enrollment group not found")]
    GroupNotFound,
    /// No such registration record.
    #[error("registration not found")]
    RegistrationNotFound,
    /// No such operation (or it belongs to another device).
    #[error("operation not found")]
    OperationNotFound,
    /// The record already exists (create without `If-Match`).
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` did not match the current etag.
    #[error("precondition failed: the etag does not match")]
    PreconditionFailed,
    /// The request is malformed or breaks a validation rule.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or unsupported `api-version`.
    #[error("{0}")]
    BadApiVersion(String),
    /// The body is larger than the 96 KB limit.
    #[error("request body exceeds the 96 KB limit")]
    PayloadTooLarge,
    /// The method is not defined for this path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is not JSON.
    #[error("unsupported media type: the body must be JSON")]
    UnsupportedMediaType,
    /// Too many requests; retry after the given seconds.
    #[error("too many requests")]
    Throttled {
        /// Seconds to wait.
        retry_after: u32,
    },
    /// The backend is unavailable; retry.
    #[error("service unavailable")]
    Unavailable,
    /// An internal error (details in the server log only).
    #[error("internal error")]
    Internal,
}
