//! The CONNECT user name, which carries the registration (reference §4.2):
//!
//! ```text
//! {idScope}/registrations/{registrationId}/api-version={v}&ClientVersion={urlencoded agent}
//! ```
//!
//! Rules: the ID scope runs to the first `/`, then the literal `registrations/` (ASCII
//! case-insensitive), the registration ID to the next `/`, then `&`-separated `k=v` parameters
//! (keys case-insensitive, unknown ones ignored, repeated known ones refused). Identifiers and
//! `api-version` are percent-decoded exactly once and must decode to UTF-8; `ClientVersion` is
//! informational and decoded lossily. A missing `api-version` or `ClientVersion` is `None`:
//! whether a missing api-version is acceptable is the service's call
//! ([`api_version::device`](crate::api_version::device)).
//!
//! Seen on the wire: Node `…&ClientVersion=azure-iot-provisioning-device%2F1.9.1`; Python
//! `…&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%283.11.7%3B…%29`; C
//! `…&ClientVersion=1.15.0`; Java `…&ClientVersion=2019-03-31` (its bug); docs and Embedded C
//! without `ClientVersion`.

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode};

use super::topic::{COMPONENT, Param, TopicError, pairs};

/// A parsed CONNECT user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    /// ID scope, decoded.
    pub id_scope: String,
    /// Registration ID, decoded (compare with the client ID and the SAS audience).
    pub registration_id: String,
    /// `api-version`, decoded.
    pub api_version: Option<String>,
    /// `ClientVersion` (the SDK's user agent), decoded.
    pub client_version: Option<String>,
}

impl Username {
    /// Parses a user name (see the module rules).
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        let bad = TopicError::InvalidUsername;
        let (scope, rest) = s.split_once('/').ok_or(bad("no registrations segment"))?;
        let rest = rest
            .get(..14)
            .filter(|p| p.eq_ignore_ascii_case("registrations/"))
            .and_then(|_| rest.get(14..))
            .ok_or(bad("no registrations segment"))?;
        let (registration, params) = rest.split_once('/').unwrap_or((rest, ""));
        let id_scope = decode_id(scope).ok_or(bad("empty or undecodable id scope"))?;
        let registration_id =
            decode_id(registration).ok_or(bad("empty or undecodable registration id"))?;
        let (mut api, mut client) = (Param::default(), Param::default());
        for (k, v) in pairs(params) {
            if k.eq_ignore_ascii_case("api-version") {
                api.set(v);
            } else if k.eq_ignore_ascii_case("ClientVersion") {
                client.set(v);
            }
        }
        let api_version = match api {
            Param::Missing => None,
            Param::Repeated => return Err(bad("repeated api-version")),
            Param::Once(v) => Some(
                percent_decode_str(v)
                    .decode_utf8()
                    .map_err(|_| bad("undecodable api-version"))?
                    .into_owned(),
            ),
        };
        let client_version = match client {
            Param::Missing => None,
            Param::Repeated => return Err(bad("repeated ClientVersion")),
            Param::Once(v) => Some(percent_decode_str(v).decode_utf8_lossy().into_owned()),
        };
        Ok(Self {
            id_scope,
            registration_id,
            api_version,
            client_version,
        })
    }
}

fn decode_id(raw: &str) -> Option<String> {
    let id = percent_decode_str(raw).decode_utf8().ok()?;
    (!id.is_empty()).then(|| id.into_owned())
}

/// The user name as the Node SDK builds it (values encoded like `encodeURIComponent`).
impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enc = |s| utf8_percent_encode(s, COMPONENT);
        write!(
            f,
            "{}/registrations/{}",
            enc(&self.id_scope),
            enc(&self.registration_id)
        )?;
        let mut sep = '/';
        if let Some(v) = &self.api_version {
            write!(f, "{sep}api-version={}", enc(v))?;
            sep = '&';
        }
        if let Some(v) = &self.client_version {
            write!(f, "{sep}ClientVersion={}", enc(v))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODE: &str = "0ne00000001/registrations/dev-1/api-version=2019-03-31\
        &ClientVersion=azure-iot-provisioning-device%2F1.9.1";
    const PYTHON: &str = "0ne00000001/registrations/dev-1/api-version=2019-03-31\
        &ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP\
        %20PREEMPT_DYNAMIC%20%400%3Bx86_64%29";

    fn user(scope: &str, id: &str, api: Option<&str>, client: Option<&str>) -> Username {
        Username {
            id_scope: scope.into(),
            registration_id: id.into(),
            api_version: api.map(Into::into),
            client_version: client.map(Into::into),
        }
    }

    #[test]
    fn captured_usernames() {
        let node = Username::parse(NODE).unwrap();
        assert_eq!(
            node,
            user(
                "0ne00000001",
                "dev-1",
                Some("2019-03-31"),
                Some("azure-iot-provisioning-device/1.9.1")
            )
        );
        assert_eq!(node.to_string(), NODE);
        let py = Username::parse(PYTHON).unwrap();
        assert_eq!(
            py.client_version.as_deref(),
            Some(
                "azure-iot-device-provisioning-py/2.14.0(3.11.7;Linux #1 SMP PREEMPT_DYNAMIC @0;x86_64)"
            )
        );
        assert_eq!(Username::parse(&py.to_string()), Ok(py));
    }

    #[test]
    fn variants_from_other_sdks() {
        let api = Some("2019-03-31");
        for (s, expected) in [
            (
                "0ne00111111/registrations/dev1/api-version=2021-06-01&ClientVersion=1.15.0",
                user("0ne00111111", "dev1", Some("2021-06-01"), Some("1.15.0")),
            ),
            (
                "0ne00111111/registrations/dev1/api-version=2019-03-31&ClientVersion=2019-03-31",
                user("0ne00111111", "dev1", api, Some("2019-03-31")),
            ),
            (
                "0neFEEDC0DE/registrations/myRegistrationId/api-version=2019-03-31",
                user("0neFEEDC0DE", "myRegistrationId", api, None),
            ),
            (
                "0ne1/Registrations/dev%3A1/ClientVersion=x&future=1&api-version=2019-03-31&",
                user("0ne1", "dev:1", api, Some("x")),
            ),
            (
                "0ne1/registrations/dev-1",
                user("0ne1", "dev-1", None, None),
            ),
            (
                "0ne1/registrations/dev-1/",
                user("0ne1", "dev-1", None, None),
            ),
            (
                "0ne1/registrations/d/ClientVersion=a/b%FF",
                user("0ne1", "d", None, Some("a/b\u{fffd}")),
            ),
        ] {
            assert_eq!(Username::parse(s), Ok(expected), "{s}");
        }
    }

    #[test]
    fn malformed() {
        for s in [
            "",
            "0ne1",
            "0ne1/",
            "0ne1/devices/dev-1",
            "0ne1/registrations",
            "0ne1/registrations/",
            "/registrations/dev-1",
            "0ne1/registrations//api-version=1",
            "0ne1/registrations/%FF",
            "0ne1/registrations/d/api-version=1&api-version=2",
            "0ne1/registrations/d/api-version=%FF",
            "0ne1/registrations/d/ClientVersion=1&clientversion=2",
        ] {
            assert!(
                matches!(Username::parse(s), Err(TopicError::InvalidUsername(_))),
                "{s}"
            );
        }
    }

    proptest! {
        #[test]
        fn round_trips(
            scope in "\\PC{1,20}",
            id in "\\PC{1,40}",
            api in proptest::option::of("\\PC{0,12}"),
            client in proptest::option::of("\\PC{0,40}"),
        ) {
            let u = Username { id_scope: scope, registration_id: id, api_version: api, client_version: client };
            prop_assert_eq!(Username::parse(&u.to_string()), Ok(u));
        }

        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = Username::parse(&s);
        }
    }
}
