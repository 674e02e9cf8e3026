//! Endpoints: `host[:port]`, as given on the command line and in connection strings.

use crate::error::Error;

/// A service endpoint: `host[:port]`, no scheme, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "https", feature = "mqtt")), allow(dead_code))]
pub(crate) struct Endpoint {
    /// `host[:port]` as given: the URL authority.
    authority: String,
    /// The host without the port (brackets kept for IPv6): the service SAS audience.
    host: String,
    /// The port, when given.
    port: Option<u16>,
}

#[cfg_attr(not(any(feature = "https", feature = "mqtt")), allow(dead_code))]
impl Endpoint {
    pub(crate) fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidEndpoint {
            endpoint: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.contains("://") {
            return Err(bad(
                "give the host name without a scheme, e.g. dps.example.net:8443",
            ));
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c))
        {
            return Err(bad("expected host[:port] only"));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("unterminated IPv6 literal"))?;
            if inner.is_empty() {
                return Err(bad("empty IPv6 literal"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected :port after the IPv6 literal"))?,
                ),
            };
            (&s[..inner.len() + 2], port)
        } else {
            match s.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h, Some(p)),
                Some(_) => return Err(bad("put an IPv6 address in brackets: [::1]:8443")),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host name is empty"));
        }
        let port = match port.map(str::parse::<u16>) {
            None => None,
            Some(Ok(n)) if n != 0 => Some(n),
            Some(_) => return Err(bad("the port must be a number from 1 to 65535")),
        };
        Ok(Self {
            authority: s.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    #[cfg_attr(not(feature = "https"), allow(dead_code))]
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The port as given, if any.
    #[cfg_attr(not(feature = "mqtt"), allow(dead_code))]
    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("localhost:8443").unwrap();
        assert_eq!((e.authority(), e.host()), ("localhost:8443", "localhost"));
        assert_eq!(e.port(), Some(8443));
        let e = Endpoint::parse("global.azure-devices-provisioning.net").unwrap();
        assert_eq!(e.host(), "global.azure-devices-provisioning.net");
        assert_eq!(e.port(), None);
        let e = Endpoint::parse("[::1]:8443").unwrap();
        assert_eq!((e.authority(), e.host()), ("[::1]:8443", "[::1]"));
        assert_eq!(e.port(), Some(8443));
        assert_eq!(Endpoint::parse("[::1]").unwrap().host(), "[::1]");
        for bad in [
            "",
            "https://dps.example.net",
            "dps.example.net/path",
            "dps.example.net:",
            "dps.example.net:0",
            "dps.example.net:99999",
            ":443",
            "::1",
            "[::1",
            "[::1]x",
            "a b",
            "user@host",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
