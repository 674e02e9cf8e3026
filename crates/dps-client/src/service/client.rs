//! [`ServiceClient`]: the service (admin) API over HTTPS.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dps_attest::sas::generate_token;
use dps_proto::http::service::{BulkMode, BulkResult};
use dps_types::{
    AttestationMechanism, DeviceRegistrationState, EnrollmentGroup, EnrollmentGroupId, Etag,
    IndividualEnrollment, RegistrationId,
};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ConnectionString;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::http::{HttpRequest, HttpResponse, JSON, Transport, segment};
use crate::tls::TrustedCa;

/// The service API version sent by default.
pub const DEFAULT_SERVICE_API_VERSION: &str = "2021-10-01";

/// The query every query call sends: the whole collection.
const SELECT_ALL: &str = r#"{"query":"SELECT *"}"#;

/// Lifetime of each request's SAS token.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A client of the DPS service API (enrollments, enrollment groups, registration records),
/// authenticated with a shared access policy.
///
/// Each request carries a fresh `SharedAccessSignature` with `sr` = the host name without the
/// port, `skn` = the policy name and a one-hour expiry. Error statuses become
/// [`Error::Service`] with the fields of Azure's error body.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    transport: Transport,
    connection: ConnectionString,
    /// `sr` of the tokens: the host name without the port (Azure's tokens never carry one).
    audience: String,
    api_version: String,
}

/// One page of a query and the token for the next one (`None` on the last page).
pub type Page<T> = (Vec<T>, Option<String>);

impl ServiceClient {
    /// Parses `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` and builds a client that
    /// trusts `ca` (or the platform roots when `None`).
    pub fn from_connection_string(
        connection_string: &str,
        ca: Option<TrustedCa>,
    ) -> Result<Self, Error> {
        Self::new(ConnectionString::parse(connection_string)?, ca)
    }

    /// A client for an already parsed connection string.
    pub fn new(connection: ConnectionString, ca: Option<TrustedCa>) -> Result<Self, Error> {
        let endpoint = Endpoint::parse(connection.host_name())?;
        let audience = endpoint.host().to_owned();
        Ok(Self {
            transport: Transport::new(endpoint, ca.as_ref(), None)?,
            connection,
            audience,
            api_version: DEFAULT_SERVICE_API_VERSION.into(),
        })
    }

    /// Uses another `api-version` (default [`DEFAULT_SERVICE_API_VERSION`]).
    #[must_use]
    pub fn with_api_version(mut self, api_version: impl Into<String>) -> Self {
        self.api_version = api_version.into();
        self
    }

    /// The `HostName` this client talks to.
    pub fn host_name(&self) -> &str {
        self.connection.host_name()
    }

    // ---- individual enrollments -------------------------------------------------------------

    /// `PUT /enrollments/{id}` without `If-Match`: creates the enrollment (the service answers
    /// 409 if it exists). The answer includes generated symmetric keys.
    pub async fn create_enrollment(
        &self,
        enrollment: &IndividualEnrollment,
    ) -> Result<IndividualEnrollment, Error> {
        let path = enrollment_path(&enrollment.registration_id);
        self.put(path, enrollment, None).await
    }

    /// `PUT /enrollments/{id}` with `If-Match` = the enrollment's etag (`*` when it has none):
    /// replaces it.
    pub async fn update_enrollment(
        &self,
        enrollment: &IndividualEnrollment,
    ) -> Result<IndividualEnrollment, Error> {
        let path = enrollment_path(&enrollment.registration_id);
        self.put(path, enrollment, Some(if_match(enrollment.etag.as_ref())))
            .await
    }

    /// `GET /enrollments/{id}` (symmetric keys are not returned: see
    /// [`enrollment_attestation`](Self::enrollment_attestation)).
    pub async fn get_enrollment(&self, id: &RegistrationId) -> Result<IndividualEnrollment, Error> {
        self.get(enrollment_path(id)).await
    }

    /// `DELETE /enrollments/{id}`, with `If-Match` when `etag` is given.
    pub async fn delete_enrollment(
        &self,
        id: &RegistrationId,
        etag: Option<&Etag>,
    ) -> Result<(), Error> {
        self.delete(enrollment_path(id), etag).await
    }

    /// `POST /enrollments/{id}/attestationmechanism`: the attestation with its keys.
    pub async fn enrollment_attestation(
        &self,
        id: &RegistrationId,
    ) -> Result<AttestationMechanism, Error> {
        self.post_empty(format!("{}/attestationmechanism", enrollment_path(id)))
            .await
    }

    /// `POST /enrollments/query` (`SELECT *`): one page of at most `page_size` enrollments
    /// (`None`: the service's default), starting at `continuation`.
    pub async fn query_enrollments(
        &self,
        page_size: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<Page<IndividualEnrollment>, Error> {
        self.query("/enrollments/query".into(), page_size, continuation)
            .await
    }

    /// Every enrollment, following continuation tokens to the end.
    pub async fn list_enrollments(&self) -> Result<Vec<IndividualEnrollment>, Error> {
        self.list("/enrollments/query").await
    }

    /// `POST /enrollments`: creates, updates or deletes many enrollments in one call. Failed
    /// items are listed in the result; the call itself succeeds.
    pub async fn bulk_enrollments(
        &self,
        mode: BulkMode,
        enrollments: &[IndividualEnrollment],
    ) -> Result<BulkResult, Error> {
        self.bulk("/enrollments", "enrollments", mode, enrollments)
            .await
    }

    // ---- enrollment groups ------------------------------------------------------------------

    /// `PUT /enrollmentGroups/{id}` without `If-Match`: creates the group.
    pub async fn create_enrollment_group(
        &self,
        group: &EnrollmentGroup,
    ) -> Result<EnrollmentGroup, Error> {
        self.put(group_path(&group.enrollment_group_id), group, None)
            .await
    }

    /// `PUT /enrollmentGroups/{id}` with `If-Match` = the group's etag (`*` when it has none).
    pub async fn update_enrollment_group(
        &self,
        group: &EnrollmentGroup,
    ) -> Result<EnrollmentGroup, Error> {
        let path = group_path(&group.enrollment_group_id);
        self.put(path, group, Some(if_match(group.etag.as_ref())))
            .await
    }

    /// `GET /enrollmentGroups/{id}`.
    pub async fn get_enrollment_group(
        &self,
        id: &EnrollmentGroupId,
    ) -> Result<EnrollmentGroup, Error> {
        self.get(group_path(id)).await
    }

    /// `DELETE /enrollmentGroups/{id}`, with `If-Match` when `etag` is given.
    pub async fn delete_enrollment_group(
        &self,
        id: &EnrollmentGroupId,
        etag: Option<&Etag>,
    ) -> Result<(), Error> {
        self.delete(group_path(id), etag).await
    }

    /// `POST /enrollmentGroups/{id}/attestationmechanism`: the attestation with its keys.
    pub async fn enrollment_group_attestation(
        &self,
        id: &EnrollmentGroupId,
    ) -> Result<AttestationMechanism, Error> {
        self.post_empty(format!("{}/attestationmechanism", group_path(id)))
            .await
    }

    /// `POST /enrollmentGroups/query` (`SELECT *`): one page.
    pub async fn query_enrollment_groups(
        &self,
        page_size: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<Page<EnrollmentGroup>, Error> {
        self.query("/enrollmentGroups/query".into(), page_size, continuation)
            .await
    }

    /// Every enrollment group, following continuation tokens to the end.
    pub async fn list_enrollment_groups(&self) -> Result<Vec<EnrollmentGroup>, Error> {
        self.list("/enrollmentGroups/query").await
    }

    /// `POST /enrollmentGroups`: many groups in one call.
    pub async fn bulk_enrollment_groups(
        &self,
        mode: BulkMode,
        groups: &[EnrollmentGroup],
    ) -> Result<BulkResult, Error> {
        self.bulk("/enrollmentGroups", "enrollmentGroups", mode, groups)
            .await
    }

    // ---- registration records ---------------------------------------------------------------

    /// `GET /registrations/{id}`: a device's registration state.
    pub async fn get_registration(
        &self,
        id: &RegistrationId,
    ) -> Result<DeviceRegistrationState, Error> {
        self.get(registration_path(id)).await
    }

    /// `DELETE /registrations/{id}`, with `If-Match` when `etag` is given.
    pub async fn delete_registration(
        &self,
        id: &RegistrationId,
        etag: Option<&Etag>,
    ) -> Result<(), Error> {
        self.delete(registration_path(id), etag).await
    }

    /// `POST /registrations/{groupId}/query`: one page of the registrations made through a
    /// group.
    pub async fn query_registrations(
        &self,
        group_id: &EnrollmentGroupId,
        page_size: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<Page<DeviceRegistrationState>, Error> {
        let path = format!("/registrations/{}/query", segment(group_id.as_str()));
        self.query(path, page_size, continuation).await
    }

    /// Every registration made through a group, following continuation tokens to the end.
    pub async fn list_registrations(
        &self,
        group_id: &EnrollmentGroupId,
    ) -> Result<Vec<DeviceRegistrationState>, Error> {
        let path = format!("/registrations/{}/query", segment(group_id.as_str()));
        self.list(&path).await
    }

    // ---- dps-rs extensions ------------------------------------------------------------------

    /// `GET /metering/operations` (a dps-rs extension): the scope's operation counters,
    /// `{"idScope":"…","operations":{"<kind>":n,…},"total":n}`.
    pub async fn operations(&self) -> Result<Value, Error> {
        self.get("/metering/operations".into()).await
    }

    // ---- plumbing ---------------------------------------------------------------------------

    /// The request for `method path`, signed with a token valid from `now_unix`.
    fn prepare(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        extra: Vec<(&'static str, String)>,
        now_unix: u64,
    ) -> HttpRequest {
        let token = generate_token(
            &self.audience,
            self.connection.key(),
            now_unix.saturating_add(TOKEN_LIFETIME.as_secs()),
            Some(self.connection.key_name()),
        );
        let mut headers = vec![("accept", "application/json".to_owned())];
        if body.is_some() {
            headers.push(("content-type", JSON.to_owned()));
        }
        headers.push(("authorization", token));
        headers.extend(extra);
        HttpRequest {
            method,
            target: format!("{path}?api-version={}", segment(&self.api_version)),
            headers,
            body,
        }
    }

    /// Sends and turns a non-2xx answer into [`Error::Service`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        extra: Vec<(&'static str, String)>,
    ) -> Result<HttpResponse, Error> {
        let req = self.prepare(method, path, body, extra, unix_now());
        let resp = self.transport.send(req).await?;
        if resp.is_success() {
            Ok(resp)
        } else {
            Err(resp.service_error())
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: String) -> Result<T, Error> {
        decode(&self.call(Method::GET, &path, None, Vec::new()).await?)
    }

    async fn put<T: Serialize + DeserializeOwned>(
        &self,
        path: String,
        record: &T,
        if_match: Option<String>,
    ) -> Result<T, Error> {
        let extra = if_match.map(|v| ("if-match", v)).into_iter().collect();
        let resp = self
            .call(Method::PUT, &path, Some(encode(record)?), extra)
            .await?;
        decode(&resp)
    }

    async fn post_empty<T: DeserializeOwned>(&self, path: String) -> Result<T, Error> {
        decode(&self.call(Method::POST, &path, None, Vec::new()).await?)
    }

    async fn delete(&self, path: String, etag: Option<&Etag>) -> Result<(), Error> {
        let extra = etag.map(|e| ("if-match", e.quoted())).into_iter().collect();
        self.call(Method::DELETE, &path, None, extra).await?;
        Ok(())
    }

    async fn query<T: DeserializeOwned>(
        &self,
        path: String,
        page_size: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<Page<T>, Error> {
        let mut extra = Vec::new();
        if let Some(n) = page_size {
            extra.push(("x-ms-max-item-count", n.to_string()));
        }
        if let Some(token) = continuation.filter(|t| !t.trim().is_empty()) {
            extra.push(("x-ms-continuation", token.to_owned()));
        }
        let body = Some(SELECT_ALL.as_bytes().to_vec());
        let resp = self.call(Method::POST, &path, body, extra).await?;
        Ok((decode(&resp)?, resp.continuation))
    }

    async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, Error> {
        let mut all = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let (items, next) = self
                .query(path.to_owned(), None, continuation.as_deref())
                .await?;
            all.extend(items);
            match next {
                None => return Ok(all),
                Some(next) if continuation.as_deref() == Some(next.as_str()) => {
                    return Err(Error::Protocol {
                        what: "the service repeated a continuation token".into(),
                        source: None,
                    });
                }
                Some(next) => continuation = Some(next),
            }
        }
    }

    async fn bulk<T: Serialize>(
        &self,
        path: &str,
        field: &str,
        mode: BulkMode,
        items: &[T],
    ) -> Result<BulkResult, Error> {
        let mut body = serde_json::Map::new();
        body.insert("mode".into(), Value::from(bulk_mode(mode)));
        body.insert(
            field.into(),
            serde_json::to_value(items).map_err(encode_error)?,
        );
        let resp = self
            .call(Method::POST, path, Some(encode(&body)?), Vec::new())
            .await?;
        decode(&resp)
    }
}

fn enrollment_path(id: &RegistrationId) -> String {
    format!("/enrollments/{}", segment(id.as_str()))
}

fn group_path(id: &EnrollmentGroupId) -> String {
    format!("/enrollmentGroups/{}", segment(id.as_str()))
}

fn registration_path(id: &RegistrationId) -> String {
    format!("/registrations/{}", segment(id.as_str()))
}

fn if_match(etag: Option<&Etag>) -> String {
    etag.map_or_else(|| "*".to_owned(), Etag::quoted)
}

/// The wire name of a bulk mode (the spec's spelling).
fn bulk_mode(mode: BulkMode) -> &'static str {
    match mode {
        BulkMode::Create => "create",
        BulkMode::Update => "update",
        BulkMode::UpdateIfMatchEtag => "updateIfMatchETag",
        BulkMode::Delete => "delete",
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(encode_error)
}

fn encode_error(e: serde_json::Error) -> Error {
    Error::Encode(e.into())
}

fn decode<T: DeserializeOwned>(resp: &HttpResponse) -> Result<T, Error> {
    serde_json::from_slice(&resp.body).map_err(|e| Error::Protocol {
        what: format!(
            "cannot decode the {} response body as {}",
            resp.status,
            short_type_name::<T>()
        ),
        source: Some(e.into()),
    })
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let outer = full.split('<').next().unwrap_or(full);
    outer.rsplit("::").next().unwrap_or(outer)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dps_attest::sas::{SasToken, verify_service};

    const KEY_B64: &str = "c2VydmljZS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==";

    fn client(host: &str) -> ServiceClient {
        ServiceClient::from_connection_string(
            &format!(
                "HostName={host};SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={KEY_B64}"
            ),
            None,
        )
        .unwrap()
    }

    fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn token_names_the_host_without_port_and_the_policy() {
        let c = client("Localhost:8443");
        let req = c.prepare(
            Method::GET,
            &enrollment_path(&RegistrationId::new("dev:1").unwrap()),
            None,
            Vec::new(),
            1_000,
        );
        assert_eq!(req.target, "/enrollments/dev%3A1?api-version=2021-10-01");
        assert_eq!(header(&req, "content-type"), None);
        let auth = header(&req, "authorization").unwrap();
        assert!(
            auth.starts_with("SharedAccessSignature sr=Localhost&sig="),
            "{auth}"
        );
        assert!(
            auth.ends_with("&se=4600&skn=provisioningserviceowner"),
            "{auth}"
        );
        let token = SasToken::parse(auth).unwrap();
        let key = dps_attest::sas::SigningKey::from_base64(KEY_B64).unwrap();
        assert_eq!(verify_service(&token, "localhost", &[&key], 1_000), Ok(0));
    }

    #[test]
    fn if_match_and_bulk_mode_spelling() {
        assert_eq!(if_match(None), "*");
        assert_eq!(if_match(Some(&Etag::new("e1"))), "\"e1\"");
        assert_eq!(bulk_mode(BulkMode::UpdateIfMatchEtag), "updateIfMatchETag");
        assert_eq!(short_type_name::<Vec<IndividualEnrollment>>(), "Vec");
        assert_eq!(
            short_type_name::<IndividualEnrollment>(),
            "IndividualEnrollment"
        );
    }

    #[test]
    fn paths_encode_ids() {
        assert_eq!(
            group_path(&EnrollmentGroupId::new("g.1").unwrap()),
            "/enrollmentGroups/g.1"
        );
        assert_eq!(
            registration_path(&RegistrationId::new("a:b").unwrap()),
            "/registrations/a%3Ab"
        );
    }
}
