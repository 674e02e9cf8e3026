//! Response topics: `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={seconds}]`,
//! built by the server and parsed by the client.

use std::fmt;

use super::{Param, RESPONSE, Rid, TopicError, pairs};

/// A DPS response topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP-style status: 200, 202, 4xx, 5xx.
    pub status: u16,
    /// The request's `$rid`.
    pub rid: Rid,
    /// Seconds before the next poll (202) or retry (429, 503).
    pub retry_after: Option<u32>,
}

impl Response {
    /// Parses a response topic (the client side). Parameters in any order, `retry-after`
    /// case-insensitively (.NET reads `Retry-After`), unknown parameters ignored.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        const BAD: TopicError = TopicError::InvalidResponseTopic;
        let rest = topic.strip_prefix(RESPONSE).ok_or(BAD)?;
        let (status, query) = rest.split_once("/?").ok_or(BAD)?;
        let status = digits(status).and_then(|s| s.parse().ok()).ok_or(BAD)?;
        let (mut rid, mut retry) = (Param::default(), Param::default());
        for (k, v) in pairs(query) {
            if k.eq_ignore_ascii_case("$rid") {
                rid.set(v);
            } else if k.eq_ignore_ascii_case("retry-after") {
                retry.set(v);
            }
        }
        let Param::Once(rid) = rid else {
            return Err(BAD);
        };
        let retry_after = match retry {
            Param::Missing => None,
            Param::Repeated => return Err(BAD),
            Param::Once(v) => Some(digits(v).and_then(|s| s.parse().ok()).ok_or(BAD)?),
        };
        Ok(Self {
            status,
            rid: Rid::new(rid).map_err(|_| BAD)?,
            retry_after,
        })
    }
}

/// `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={n}]`.
impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{RESPONSE}{}/?$rid={}", self.status, self.rid)?;
        if let Some(n) = self.retry_after {
            write!(f, "&retry-after={n}")?;
        }
        Ok(())
    }
}

/// Builds a response topic: `$rid` first and verbatim, then `retry-after` when given.
pub fn response_topic(status: u16, rid: &Rid, retry_after: Option<u32>) -> String {
    Response {
        status,
        rid: rid.clone(),
        retry_after,
    }
    .to_string()
}

/// `s` if it is 1-10 ASCII digits (`str::parse` alone would take a leading `+`).
fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODE_RID: &str = "bc7266d3-bab8-4445-ad20-687267ae9668";

    fn rid(s: &str) -> Rid {
        Rid::new(s).unwrap()
    }

    #[test]
    fn response_topics_are_built_exactly() {
        let r = rid(NODE_RID);
        assert_eq!(
            response_topic(202, &r, Some(1)),
            format!("$dps/registrations/res/202/?$rid={NODE_RID}&retry-after=1")
        );
        assert_eq!(
            response_topic(200, &rid("1"), None),
            "$dps/registrations/res/200/?$rid=1"
        );
        assert_eq!(
            response_topic(401, &rid("1"), None),
            "$dps/registrations/res/401/?$rid=1"
        );
        let t = response_topic(429, &rid("x"), Some(30));
        assert_eq!(Response::parse(&t).unwrap().retry_after, Some(30));
    }

    #[test]
    fn response_parsing_is_lenient_in_order_strict_in_values() {
        let ok = Response::parse("$dps/registrations/res/503/?Retry-After=5&x=y&$rid=r1").unwrap();
        assert_eq!(
            ok,
            Response {
                status: 503,
                rid: rid("r1"),
                retry_after: Some(5)
            }
        );
        for bad in [
            "$dps/registrations/res/202?$rid=1",
            "$dps/registrations/res//?$rid=1",
            "$dps/registrations/res/+2/?$rid=1",
            "$dps/registrations/res/70000/?$rid=1",
            "$dps/registrations/res/202/?retry-after=1",
            "$dps/registrations/res/202/?$rid=1&retry-after=-1",
            "$dps/registrations/res/202/?$rid=1&retry-after=1&retry-after=2",
            "$dps/registrations/res/202/?$rid=",
        ] {
            assert_eq!(
                Response::parse(bad),
                Err(TopicError::InvalidResponseTopic),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn round_trips(status: u16, r in "[!-~]{1,40}", retry_after: Option<u32>) {
            let Ok(r) = Rid::new(&r) else { return Ok(()) };
            let resp = Response { status, rid: r, retry_after };
            let topic = resp.to_string();
            // What .NET and Python rely on: `$rid` right after `?`, and only two `$`.
            let prefix = format!("$dps/registrations/res/{status}/?$rid=");
            prop_assert!(topic.starts_with(&prefix));
            prop_assert_eq!(topic.matches('$').count(), 2);
            prop_assert_eq!(Response::parse(&topic), Ok(resp));
        }
    }
}
