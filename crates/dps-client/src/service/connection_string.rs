//! The service connection string: `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`.

use std::fmt;
use std::str::FromStr;

use dps_attest::sas::SigningKey;

/// Why a connection string was refused. Messages never contain the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// A `;`-separated part has no `=`.
    #[error("part {0} is not a Name=value pair")]
    NotAPair(usize),
    /// A required field is absent.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A field appears twice.
    #[error("{0} is given more than once")]
    Duplicate(&'static str),
    /// A field has an empty value.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A field this client does not know (e.g. `DeviceId` of a device connection string).
    #[error(
        "unknown field {}in part {part} (a service connection string has HostName, SharedAccessKeyName and SharedAccessKey)",
        name.as_ref().map(|n| format!("'{n}' ")).unwrap_or_default()
    )]
    Unknown {
        /// 1-based position of the part.
        part: usize,
        /// The field name, when it is short enough not to be a pasted key.
        name: Option<String>,
    },
    /// `HostName` is not a `host[:port]`.
    #[error("HostName must be a host name with an optional :port, not '{0}'")]
    BadHostName(String),
    /// `SharedAccessKey` is not base64.
    #[error("SharedAccessKey is not valid base64")]
    BadKey,
}

/// A parsed service connection string. `Debug` and `Display` never show the key.
#[derive(Clone)]
pub struct ConnectionString {
    host_name: String,
    key_name: String,
    key: SigningKey,
}

const HOST_NAME: &str = "HostName";
const KEY_NAME: &str = "SharedAccessKeyName";
const KEY: &str = "SharedAccessKey";

impl ConnectionString {
    /// Parses `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`: fields in any order, names
    /// matched case-insensitively, each exactly once, no others; whitespace around parts and
    /// one trailing `;` are tolerated. `HostName` may carry `:port`.
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let (mut host, mut key_name, mut key) = (None, None, None);
        let s = s.trim();
        let s = s.strip_suffix(';').unwrap_or(s);
        for (i, part) in s.split(';').enumerate() {
            let (name, value) = part
                .split_once('=')
                .ok_or(ConnectionStringError::NotAPair(i + 1))?;
            let (name, value) = (name.trim(), value.trim());
            let (field, slot) = if name.eq_ignore_ascii_case(HOST_NAME) {
                (HOST_NAME, &mut host)
            } else if name.eq_ignore_ascii_case(KEY_NAME) {
                (KEY_NAME, &mut key_name)
            } else if name.eq_ignore_ascii_case(KEY) {
                (KEY, &mut key)
            } else {
                return Err(ConnectionStringError::Unknown {
                    part: i + 1,
                    name: shown_name(name),
                });
            };
            if value.is_empty() {
                return Err(ConnectionStringError::Empty(field));
            }
            if slot.replace(value).is_some() {
                return Err(ConnectionStringError::Duplicate(field));
            }
        }
        let host = host.ok_or(ConnectionStringError::Missing(HOST_NAME))?;
        let key_name = key_name.ok_or(ConnectionStringError::Missing(KEY_NAME))?;
        let key = key.ok_or(ConnectionStringError::Missing(KEY))?;
        crate::endpoint::Endpoint::parse(host)
            .map_err(|_| ConnectionStringError::BadHostName(host.to_owned()))?;
        Ok(Self {
            host_name: host.to_owned(),
            key_name: key_name.to_owned(),
            key: SigningKey::from_base64(key).map_err(|_| ConnectionStringError::BadKey)?,
        })
    }

    /// `HostName` as given (`host[:port]`).
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// `SharedAccessKeyName`: the shared access policy.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The decoded `SharedAccessKey`.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }
}

/// A field name safe to echo: short and alphanumeric. A pasted base64 key with `=` padding
/// looks like a `name=` pair; keys of 16 bytes or more encode to at least 22 characters, so
/// they are never shown.
fn shown_name(name: &str) -> Option<String> {
    (!name.is_empty() && name.len() <= 21 && name.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| name.to_owned())
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HostName={};SharedAccessKeyName={};SharedAccessKey=<redacted>",
            self.host_name, self.key_name
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY_B64: &str = "c2VydmljZS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==";

    #[test]
    fn parses_in_any_order() {
        let a = ConnectionString::parse(&format!(
            "HostName=localhost:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={KEY_B64}"
        ))
        .unwrap();
        assert_eq!(a.host_name(), "localhost:8443");
        assert_eq!(a.key_name(), "provisioningserviceowner");
        assert_eq!(a.key().to_base64(), KEY_B64);
        let b: ConnectionString = format!(
            " sharedaccesskey={KEY_B64} ; HOSTNAME=mydps.azure-devices-provisioning.net;SharedAccessKeyName=p;"
        )
        .parse()
        .unwrap();
        assert_eq!(b.host_name(), "mydps.azure-devices-provisioning.net");
        assert_eq!(b.key_name(), "p");
    }

    #[test]
    fn refuses_clearly_and_never_echoes_the_key() {
        use ConnectionStringError as E;
        let k = KEY_B64;
        for (s, want) in [
            (
                "HostName=h;SharedAccessKeyName=p".to_owned(),
                E::Missing(KEY),
            ),
            (
                format!("SharedAccessKeyName=p;SharedAccessKey={k}"),
                E::Missing(HOST_NAME),
            ),
            (
                format!("HostName=h;SharedAccessKey={k}"),
                E::Missing(KEY_NAME),
            ),
            (
                format!("HostName=h;HostName=g;SharedAccessKeyName=p;SharedAccessKey={k}"),
                E::Duplicate(HOST_NAME),
            ),
            (
                format!("HostName=;SharedAccessKeyName=p;SharedAccessKey={k}"),
                E::Empty(HOST_NAME),
            ),
            (
                format!("HostName=h;{k}"),
                E::Unknown {
                    part: 2,
                    name: None,
                },
            ),
            ("HostName=h;SharedAccessKeyName".to_owned(), E::NotAPair(2)),
            (
                format!("HostName=h;DeviceId=d;SharedAccessKey={k}"),
                E::Unknown {
                    part: 2,
                    name: Some("DeviceId".into()),
                },
            ),
            (
                format!("HostName=https://h;SharedAccessKeyName=p;SharedAccessKey={k}"),
                E::BadHostName("https://h".into()),
            ),
            (
                "HostName=h;SharedAccessKeyName=p;SharedAccessKey=not base64!".to_owned(),
                E::BadKey,
            ),
            (String::new(), E::NotAPair(1)),
            (
                format!("HostName=h;;SharedAccessKeyName=p;SharedAccessKey={k}"),
                E::NotAPair(2),
            ),
        ] {
            let err = ConnectionString::parse(&s).unwrap_err();
            assert_eq!(err, want, "{s}");
            assert!(!err.to_string().contains(k));
        }
        let cs = ConnectionString::parse(&format!(
            "HostName=h;SharedAccessKeyName=p;SharedAccessKey={k}"
        ))
        .unwrap();
        assert!(!format!("{cs:?}").contains(k));
        assert!(!cs.to_string().contains(k));
    }
}
