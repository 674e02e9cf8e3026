//! An IoT hub's service connection string
//! (`HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`), and the SAS tokens derived from it.

use std::fmt;

use dps_attest::sas::{SigningKey, generate_token};

/// Why a connection string was refused (the text never contains the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// A required part is missing.
    #[error("the connection string has no {0}")]
    Missing(&'static str),
    /// A part is not `Name=value`.
    #[error("the connection string has a part without '='")]
    Malformed,
    /// The key is not valid base64.
    #[error("SharedAccessKey is not valid base64")]
    BadKey,
}

/// How requests to the hub are authorised.
#[derive(Clone)]
enum Credential {
    /// A policy key: a fresh token per request.
    Key { name: String, key: SigningKey },
    /// A ready-made token (`SharedAccessSignature=`), sent as is.
    Token(String),
}

/// A parsed hub connection string.
#[derive(Clone)]
pub struct HubConnectionString {
    /// `HostName`, e.g. `myhub.azure-devices.net`.
    pub host_name: String,
    credential: Credential,
}

impl fmt::Debug for HubConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = match &self.credential {
            Credential::Key { name, .. } => name.as_str(),
            Credential::Token(_) => "(token)",
        };
        f.debug_struct("HubConnectionString")
            .field("host_name", &self.host_name)
            .field("policy", &policy)
            .finish_non_exhaustive()
    }
}

impl HubConnectionString {
    /// Parses `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` (or
    /// `HostName=…;SharedAccessSignature=SharedAccessSignature sr=…`). Parts split on `;`, names
    /// from values on the first `=`; unknown parts are ignored.
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let (mut host, mut name, mut key, mut sig) = (None, None, None, None);
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or(ConnectionStringError::Malformed)?;
            match k {
                "HostName" => host = Some(v),
                "SharedAccessKeyName" => name = Some(v),
                "SharedAccessKey" => key = Some(v),
                "SharedAccessSignature" => sig = Some(v),
                _ => {}
            }
        }
        let host_name = host
            .filter(|h| !h.is_empty())
            .ok_or(ConnectionStringError::Missing("HostName"))?
            .to_owned();
        let credential = match (name, key, sig) {
            (Some(name), Some(key), _) => Credential::Key {
                name: name.to_owned(),
                key: SigningKey::from_base64(key).map_err(|_| ConnectionStringError::BadKey)?,
            },
            (_, _, Some(sig)) => Credential::Token(sig.to_owned()),
            (None, _, None) => return Err(ConnectionStringError::Missing("SharedAccessKeyName")),
            (Some(_), None, None) => return Err(ConnectionStringError::Missing("SharedAccessKey")),
        };
        Ok(Self {
            host_name,
            credential,
        })
    }

    /// The `Authorization` value for a request made at `now` (unix seconds): a token for the
    /// host name valid for `lifetime_secs`, signed with the policy key.
    pub fn authorization(&self, now: u64, lifetime_secs: u64) -> String {
        match &self.credential {
            Credential::Key { name, key } => {
                generate_token(&self.host_name, key, now + lifetime_secs, Some(name))
            }
            Credential::Token(t) => t.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_test_vector() {
        // hub-registries.md §A2.2.
        let cs = HubConnectionString::parse(
            "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;\
             SharedAccessKey=ZHBzLXJzIGV4YW1wbGUgcG9saWN5IGtleSAzMmJ5dGU=",
        )
        .unwrap();
        assert_eq!(cs.host_name, "myhub.azure-devices.net");
        assert_eq!(
            cs.authorization(1_767_225_600 - 3600, 3600),
            "SharedAccessSignature sr=myhub.azure-devices.net\
             &sig=wMlLduShj1xhrrGUESWN9pPufjdVxZBJwQlIdeQiQM4%3D&se=1767225600&skn=iothubowner"
        );
        assert!(!format!("{cs:?}").contains("ZHBz"), "keys never printed");
    }

    #[test]
    fn malformed_strings_are_refused() {
        assert_eq!(
            HubConnectionString::parse("SharedAccessKeyName=a;SharedAccessKey=AAAA").unwrap_err(),
            ConnectionStringError::Missing("HostName")
        );
        assert_eq!(
            HubConnectionString::parse("HostName=h;SharedAccessKeyName=a").unwrap_err(),
            ConnectionStringError::Missing("SharedAccessKey")
        );
        assert_eq!(
            HubConnectionString::parse("HostName=h;junk").unwrap_err(),
            ConnectionStringError::Malformed
        );
        assert_eq!(
            HubConnectionString::parse("HostName=h;SharedAccessKeyName=a;SharedAccessKey=%%")
                .unwrap_err(),
            ConnectionStringError::BadKey
        );
        let t = HubConnectionString::parse(
            "HostName=h;SharedAccessSignature=SharedAccessSignature sr=h&sig=x&se=1",
        )
        .unwrap();
        assert_eq!(
            t.authorization(0, 1),
            "SharedAccessSignature sr=h&sig=x&se=1"
        );
    }
}
