//! The `$dps/registrations` topic grammar (reference §4.3): request topics in, response topics
//! out, and the one subscription filter.
//!
//! ```text
//! device → DPS  $dps/registrations/PUT/iotdps-register/?$rid={rid}
//! device → DPS  $dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}
//! DPS → device  $dps/registrations/res/{status}/?$rid={rid}[&retry-after={seconds}]
//! SUBSCRIBE     $dps/registrations/res/#
//! ```
//!
//! Rules: query parameters come in any order, keys match ASCII case-insensitively, unknown keys
//! are ignored. `$rid` is opaque (a counter or a UUID): kept raw, never percent-decoded, and
//! echoed byte for byte — **first** after `?`, because .NET matches `\?\$rid=(.*?)$` and Python
//! splits the topic on `$`. So a [`Rid`] is 1-128 visible ASCII characters other than
//! `$ & # + / ? =`: nothing that could end the parameter, add a `$`, form a wildcard or confuse
//! Node's `(.*)\/\?` match. `operationId` is percent-decoded (Python quotes it). Once `$rid` is
//! known, errors carry it ([`TopicError::rid`]) so the server can still answer on
//! `res/400/?$rid=…` instead of leaving the device to time out.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The filter every SDK subscribes to.
pub const RESPONSE_FILTER: &str = "$dps/registrations/res/#";
/// Longest accepted `$rid`.
pub const MAX_RID_LEN: usize = 128;
/// Longest accepted `operationId`, decoded (dps-types' `OperationId` bound).
pub const MAX_OPERATION_ID_LEN: usize = 128;

const REGISTER: &str = "$dps/registrations/PUT/iotdps-register/";
const POLL: &str = "$dps/registrations/GET/iotdps-get-operationstatus/";
const RESPONSE: &str = "$dps/registrations/res/";

mod response;

pub use response::{Response, response_topic};

/// JavaScript's `encodeURIComponent` set, which is what the Node SDK sends.
pub(crate) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// True for the response filter, the only one DPS serves (others get SUBACK `0x80`).
pub fn is_response_filter(filter: &str) -> bool {
    filter == RESPONSE_FILTER
}

/// Why a topic (or the CONNECT user name) does not follow the DPS grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Neither the register nor the poll topic (with its `$rid`, if it had a valid one).
    #[error("unknown topic")]
    UnknownTopic {
        /// The request's `$rid`, to answer on.
        rid: Option<Rid>,
    },
    /// No `$rid` parameter: there is no topic to answer on.
    #[error("missing $rid")]
    MissingRid,
    /// An empty, over-long, repeated or unsafe `$rid`.
    #[error("invalid $rid")]
    InvalidRid,
    /// A poll without `operationId`.
    #[error("missing operationId")]
    MissingOperationId {
        /// The request's `$rid`, to answer on.
        rid: Rid,
    },
    /// An empty, over-long, repeated or undecodable `operationId`.
    #[error("invalid operationId")]
    InvalidOperationId {
        /// The request's `$rid`, to answer on.
        rid: Rid,
    },
    /// Not `$dps/registrations/res/{status}/?$rid=…[&retry-after=…]`.
    #[error("invalid response topic")]
    InvalidResponseTopic,
    /// Not `{idScope}/registrations/{registrationId}[/{params}]`.
    #[error("invalid username: {0}")]
    InvalidUsername(&'static str),
}

impl TopicError {
    /// The request's `$rid` when it was valid: answer on its response topic.
    pub fn rid(&self) -> Option<&Rid> {
        match self {
            Self::UnknownTopic { rid } => rid.as_ref(),
            Self::MissingOperationId { rid } | Self::InvalidOperationId { rid } => Some(rid),
            _ => None,
        }
    }
}

/// A request ID: opaque, echoed verbatim, safe to put in a response topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rid(String);

impl Rid {
    /// Checks a raw `$rid` value (see the module rules).
    pub fn new(s: &str) -> Result<Self, TopicError> {
        let safe = |b: u8| b.is_ascii_graphic() && !b"$&#+/?=".contains(&b);
        if s.is_empty() || s.len() > MAX_RID_LEN || !s.bytes().all(safe) {
            return Err(TopicError::InvalidRid);
        }
        Ok(Self(s.to_owned()))
    }

    /// The value as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device request, from the topic of its PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `PUT/iotdps-register`: the payload is a `DeviceRegistration` (possibly empty).
    Register {
        /// Request ID to answer on.
        rid: Rid,
    },
    /// `GET/iotdps-get-operationstatus`: the payload is ignored (`" "`, empty or JSON).
    Poll {
        /// Request ID to answer on.
        rid: Rid,
        /// Operation to report on, percent-decoded.
        operation_id: String,
    },
}

impl Request {
    /// Parses a request topic.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let (path, query) = topic.split_once('?').unwrap_or((topic, ""));
        let mut rid = Param::default();
        let mut op = Param::default();
        for (k, v) in pairs(query) {
            if k.eq_ignore_ascii_case("$rid") {
                rid.set(v);
            } else if k.eq_ignore_ascii_case("operationId") {
                op.set(v);
            }
        }
        let rid = match rid {
            Param::Missing => Err(TopicError::MissingRid),
            Param::Repeated => Err(TopicError::InvalidRid),
            Param::Once(v) => Rid::new(v),
        };
        let poll = match path {
            REGISTER => false,
            POLL => true,
            _ => return Err(TopicError::UnknownTopic { rid: rid.ok() }),
        };
        let rid = rid?;
        if !poll {
            return Ok(Self::Register { rid });
        }
        let raw = match op {
            Param::Missing => return Err(TopicError::MissingOperationId { rid }),
            Param::Repeated => return Err(TopicError::InvalidOperationId { rid }),
            Param::Once(v) => v,
        };
        match percent_decode_str(raw).decode_utf8() {
            Ok(id)
                if !id.is_empty()
                    && id.len() <= MAX_OPERATION_ID_LEN
                    && !id.chars().any(char::is_control) =>
            {
                Ok(Self::Poll {
                    rid,
                    operation_id: id.into_owned(),
                })
            }
            _ => Err(TopicError::InvalidOperationId { rid }),
        }
    }

    /// The request ID to answer on.
    pub fn rid(&self) -> &Rid {
        match self {
            Self::Register { rid } | Self::Poll { rid, .. } => rid,
        }
    }
}

/// The request topic, as the Node SDK writes it (`operationId` percent-encoded like
/// `encodeURIComponent`, which leaves DPS operation IDs unchanged).
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Register { rid } => write!(f, "{REGISTER}?$rid={rid}"),
            Self::Poll { rid, operation_id } => {
                let op = utf8_percent_encode(operation_id, COMPONENT);
                write!(f, "{POLL}?$rid={rid}&operationId={op}")
            }
        }
    }
}

/// A query parameter seen zero, one or several times.
#[derive(Default)]
pub(super) enum Param<'a> {
    #[default]
    Missing,
    Once(&'a str),
    Repeated,
}

impl<'a> Param<'a> {
    pub(super) fn set(&mut self, v: &'a str) {
        *self = match self {
            Self::Missing => Self::Once(v),
            _ => Self::Repeated,
        };
    }
}

/// `k=v` pairs of a query; a pair without `=` has an empty value, empty pairs are skipped.
pub(super) fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODE_RID: &str = "bc7266d3-bab8-4445-ad20-687267ae9668";
    const OP: &str = "5.6d933c01ec63ab68.6c96525a-60d4-400f-bc57-3178f2bccdd2";

    fn rid(s: &str) -> Rid {
        Rid::new(s).unwrap()
    }

    #[test]
    fn captured_requests_parse_and_rebuild() {
        let register = format!("$dps/registrations/PUT/iotdps-register/?$rid={NODE_RID}");
        let r = Request::parse(&register).unwrap();
        assert_eq!(r, Request::Register { rid: rid(NODE_RID) });
        assert_eq!(r.to_string(), register);

        let poll = format!(
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=592acb0b-0a42-43ee-adfa-d0fcd25bda3f&operationId={OP}"
        );
        let p = Request::parse(&poll).unwrap();
        assert_eq!(
            p,
            Request::Poll {
                rid: rid("592acb0b-0a42-43ee-adfa-d0fcd25bda3f"),
                operation_id: OP.into()
            }
        );
        assert_eq!(p.to_string(), poll);
        // C / .NET counters, Embedded C's constant 1.
        assert_eq!(p.rid().as_str(), "592acb0b-0a42-43ee-adfa-d0fcd25bda3f");
        let c = Request::parse("$dps/registrations/PUT/iotdps-register/?$rid=1").unwrap();
        assert_eq!(c.rid().as_str(), "1");
    }

    #[test]
    fn query_is_order_free_and_lenient() {
        let poll = "$dps/registrations/GET/iotdps-get-operationstatus/";
        for q in [
            "?operationId=5.a.b&$rid=7",
            "?$rid=7&operationId=5.a.b&future=1&flag",
            "?&$RID=7&&OPERATIONID=5.a%2Eb",
        ] {
            assert_eq!(
                Request::parse(&format!("{poll}{q}")),
                Ok(Request::Poll {
                    rid: rid("7"),
                    operation_id: "5.a.b".into()
                }),
                "{q}"
            );
        }
        // Python percent-encodes the operation ID; the rid stays raw.
        let r = Request::parse(&format!("{poll}?$rid=a%20b&operationId=x%2Fy")).unwrap();
        assert_eq!(r.rid().as_str(), "a%20b");
        assert!(matches!(r, Request::Poll { ref operation_id, .. } if operation_id == "x/y"));
        assert_eq!(
            r.to_string(),
            format!("{poll}?$rid=a%20b&operationId=x%2Fy")
        );
    }

    #[test]
    fn rid_rules() {
        let reg = "$dps/registrations/PUT/iotdps-register/";
        assert_eq!(Request::parse(reg), Err(TopicError::MissingRid));
        assert_eq!(
            Request::parse(&format!("{reg}?x=1")),
            Err(TopicError::MissingRid)
        );
        let long = "a".repeat(MAX_RID_LEN + 1);
        for bad in [
            "", "a$b", "a#", "a+b", "a/b", "a b", "a\u{7f}", "\u{e9}", &long,
        ] {
            let t = format!("{reg}?$rid={bad}");
            assert_eq!(Request::parse(&t), Err(TopicError::InvalidRid), "{bad:?}");
        }
        assert_eq!(
            Request::parse(&format!("{reg}?$rid=1&$rid=2")),
            Err(TopicError::InvalidRid)
        );
        assert!(Rid::new(&"a".repeat(MAX_RID_LEN)).is_ok());
    }

    #[test]
    fn errors_keep_the_rid_when_known() {
        let poll = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=9";
        let e = Request::parse(poll).unwrap_err();
        assert_eq!(e, TopicError::MissingOperationId { rid: rid("9") });
        assert_eq!(e.rid().map(Rid::as_str), Some("9"));
        let long = "o".repeat(MAX_OPERATION_ID_LEN + 1);
        for bad in ["", "%FF", "a%0Ab", &long] {
            let e = Request::parse(&format!("{poll}&operationId={bad}")).unwrap_err();
            assert_eq!(e, TopicError::InvalidOperationId { rid: rid("9") }, "{bad}");
        }
        for (topic, rid_) in [
            (
                "$dps/registrations/PUT/iotdps-register?$rid=3",
                Some(rid("3")),
            ),
            (
                "$dps/registrations/put/iotdps-register/?$rid=3",
                Some(rid("3")),
            ),
            ("$dps/registrations/res/200/?$rid=3", Some(rid("3"))),
            (
                "$dps/registrations/PUT/iotdps-register/x/?$rid=3",
                Some(rid("3")),
            ),
            ("devices/d/messages/events/", None),
            ("", None),
        ] {
            assert_eq!(
                Request::parse(topic),
                Err(TopicError::UnknownTopic { rid: rid_ }),
                "{topic}"
            );
        }
    }

    #[test]
    fn response_filter() {
        assert!(is_response_filter("$dps/registrations/res/#"));
        assert!(!is_response_filter("$dps/registrations/res/+"));
        assert!(!is_response_filter("$dps/registrations/#"));
    }

    fn rid_strategy() -> impl Strategy<Value = Rid> {
        "[!-~]{1,40}".prop_filter_map("unsafe rid", |s| Rid::new(&s).ok())
    }

    proptest! {
        #[test]
        fn request_topics_round_trip(r in rid_strategy(), op in "\\PC{0,30}", poll: bool) {
            let req = if poll && !op.is_empty() {
                Request::Poll { rid: r, operation_id: op }
            } else {
                Request::Register { rid: r }
            };
            prop_assert_eq!(Request::parse(&req.to_string()), Ok(req));
        }


        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}") {
            let _ = Request::parse(&s);
            let _ = Response::parse(&s);
        }
    }
}
