//! Parsing a `SharedAccessSignature ...` token.

use std::fmt;

use base64::Engine as _;

use super::encoding::{B64, percent_decode, percent_decode_utf8};
use super::{SasError, SigningKey};

/// Longest token [`SasToken::parse`] accepts, in bytes (before trimming whitespace).
pub const MAX_TOKEN_LEN: usize = 4096;

const PREFIX: &str = "SharedAccessSignature";

/// A parsed SAS token, borrowing `sr` and `se` from the header or password text.
///
/// Parsing checks structure only; use [`super::verify_device`] or [`super::verify_service`] to
/// check expiry, audience and signature. `Debug` hides the signature, since a token is a bearer
/// credential until it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken<'a> {
    sr_raw: &'a str,
    se: u64,
    se_raw: &'a str,
    sig: [u8; 32],
    skn: Option<String>,
}

impl<'a> SasToken<'a> {
    /// Parses `SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`.
    ///
    /// * The prefix is case-sensitive; whitespace around the whole token and between the prefix
    ///   and the fields is tolerated.
    /// * Fields are split on `&`, each on its first `=`, in any order. `sr`, `sig` and `se` are
    ///   required, `skn` is optional (an empty `skn=` counts as absent). Duplicate, empty-named
    ///   and unknown fields are rejected.
    /// * `sig` is percent-decoded, then base64-decoded (standard alphabet, padding optional) and
    ///   must be exactly 32 bytes. `se` is a decimal `u64` (digits only). `skn` is
    ///   percent-decoded and must be UTF-8. `sr` is kept exactly as received.
    /// * Tokens longer than [`MAX_TOKEN_LEN`] bytes are rejected.
    pub fn parse(token: &'a str) -> Result<Self, SasError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(SasError::Malformed("token too long"));
        }
        let after_prefix = token
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SasError::Malformed("missing SharedAccessSignature prefix"))?;
        let fields = after_prefix.trim_start();
        if fields.is_empty() {
            return Err(SasError::Malformed("no fields"));
        }
        if fields.len() == after_prefix.len() {
            return Err(SasError::Malformed("missing space after prefix"));
        }

        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in fields.split('&') {
            let (name, value) = field
                .split_once('=')
                .ok_or(SasError::Malformed("field without '='"))?;
            let slot = match name {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                _ => return Err(SasError::Malformed("unknown field")),
            };
            if slot.replace(value).is_some() {
                return Err(SasError::Malformed("duplicate field"));
            }
        }

        let sr_raw = sr.ok_or(SasError::Malformed("missing sr"))?;
        if sr_raw.is_empty() {
            return Err(SasError::Malformed("empty sr"));
        }
        let se_raw = se.ok_or(SasError::Malformed("missing se"))?;
        let se = parse_expiry(se_raw)?;
        let sig = decode_signature(sig.ok_or(SasError::Malformed("missing sig"))?)?;
        let skn = match skn {
            None | Some("") => None,
            Some(raw) => {
                Some(percent_decode_utf8(raw).ok_or(SasError::Malformed("bad encoding in skn"))?)
            }
        };
        Ok(Self {
            sr_raw,
            se,
            se_raw,
            sig,
            skn,
        })
    }

    /// The `sr` value exactly as received (still percent-encoded if the client encoded it).
    /// This, not the decoded audience, is what the client signed.
    #[must_use]
    pub fn resource_raw(&self) -> &'a str {
        self.sr_raw
    }

    /// The percent-decoded `sr`: the scope/registration path for device tokens, the host name
    /// for service tokens. `+` stays `+`; malformed `%` escapes and non-UTF-8 results are errors.
    pub fn audience(&self) -> Result<String, SasError> {
        percent_decode_utf8(self.sr_raw).ok_or(SasError::Malformed("bad encoding in sr"))
    }

    /// The `se` expiry, unix seconds.
    #[must_use]
    pub fn expiry(&self) -> u64 {
        self.se
    }

    /// The percent-decoded `skn` (policy name for service tokens; `registration` or absent for
    /// device tokens).
    #[must_use]
    pub fn key_name(&self) -> Option<&str> {
        self.skn.as_deref()
    }

    /// Whether `sig` is `HMAC-SHA256(key, sr_raw + "\n" + se_raw)`, compared in constant time.
    ///
    /// This checks the signature only, not expiry or audience.
    #[must_use]
    pub fn verify_signature(&self, key: &SigningKey) -> bool {
        let mac = key.sign_parts(&[self.sr_raw.as_bytes(), b"\n", self.se_raw.as_bytes()]);
        crate::ct_eq(&mac, &self.sig)
    }
}

impl fmt::Debug for SasToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("sr", &self.sr_raw)
            .field("se", &self.se)
            .field("skn", &self.skn)
            .field("sig", &"<redacted>")
            .finish()
    }
}

fn parse_expiry(raw: &str) -> Result<u64, SasError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SasError::Malformed("se is not a decimal number"));
    }
    raw.parse()
        .map_err(|_| SasError::Malformed("se out of range"))
}

fn decode_signature(raw: &str) -> Result<[u8; 32], SasError> {
    let text = percent_decode(raw).ok_or(SasError::Malformed("bad encoding in sig"))?;
    let bytes = B64
        .decode(text)
        .map_err(|_| SasError::Malformed("sig is not base64"))?;
    bytes
        .try_into()
        .map_err(|_| SasError::Malformed("sig is not 32 bytes"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODE: &str = "SharedAccessSignature sr=0ne00000001/registrations/dev-1&sig=jFfflPGD%2F46OqssgLa1p2lQJewa99l7oFYFW9vj8WWQ%3D&skn=registration&se=1795769664";
    const SIG: &str = "jFfflPGD%2F46OqssgLa1p2lQJewa99l7oFYFW9vj8WWQ%3D";

    fn malformed(token: &str) -> &'static str {
        match SasToken::parse(token) {
            Err(SasError::Malformed(why)) => why,
            other => panic!("expected Malformed for {token:?}, got {other:?}"),
        }
    }

    fn with_fields(fields: &str) -> String {
        format!("SharedAccessSignature {fields}")
    }

    #[test]
    fn parses_node_token() {
        let t = SasToken::parse(NODE).unwrap();
        assert_eq!(t.resource_raw(), "0ne00000001/registrations/dev-1");
        assert_eq!(t.audience().unwrap(), "0ne00000001/registrations/dev-1");
        assert_eq!(t.expiry(), 1_795_769_664);
        assert_eq!(t.key_name(), Some("registration"));
        let want = B64
            .decode("jFfflPGD/46OqssgLa1p2lQJewa99l7oFYFW9vj8WWQ=")
            .unwrap();
        assert_eq!(t.sig[..], want[..]);
    }

    #[test]
    fn field_order_does_not_matter() {
        let orders = [
            format!("sr=a%2Fb&sig={SIG}&skn=registration&se=10"),
            format!("sr=a%2Fb&sig={SIG}&se=10&skn=registration"),
            format!("sr=a%2Fb&skn=registration&sig={SIG}&se=10"),
            format!("sig={SIG}&se=10&skn=registration&sr=a%2Fb"),
        ];
        let texts = orders.map(|fields| with_fields(&fields));
        let first = SasToken::parse(&texts[0]).unwrap();
        assert_eq!(first.key_name(), Some("registration"));
        for text in &texts[1..] {
            assert_eq!(SasToken::parse(text).unwrap(), first, "{text}");
        }
    }

    #[test]
    fn skn_is_optional_and_decoded() {
        let key_name = |tail: &str| {
            let text = with_fields(&format!("sr=x&sig={SIG}&se=1{tail}"));
            SasToken::parse(&text).map(|t| t.key_name().map(str::to_owned))
        };
        assert_eq!(key_name(""), Ok(None));
        assert_eq!(key_name("&skn="), Ok(None));
        assert_eq!(key_name("&skn=a%20b+c"), Ok(Some("a b+c".to_owned())));
        assert_eq!(
            key_name("&skn=%FF"),
            Err(SasError::Malformed("bad encoding in skn"))
        );
    }

    #[test]
    fn whitespace_around_the_token_is_tolerated() {
        let padded = format!("  {NODE}\r\n");
        assert_eq!(
            SasToken::parse(&padded).unwrap(),
            SasToken::parse(NODE).unwrap()
        );
        let two_spaces = NODE.replacen(' ', "   ", 1);
        assert!(SasToken::parse(&two_spaces).is_ok());
    }

    #[test]
    fn prefix_is_required_and_case_sensitive() {
        let fields = format!("sr=x&sig={SIG}&se=1");
        assert_eq!(malformed(&fields), "missing SharedAccessSignature prefix");
        let lower = format!("sharedaccesssignature {fields}");
        assert_eq!(malformed(&lower), "missing SharedAccessSignature prefix");
        let glued = format!("SharedAccessSignature{fields}");
        assert_eq!(malformed(&glued), "missing space after prefix");
        assert_eq!(malformed(""), "missing SharedAccessSignature prefix");
    }

    #[test]
    fn duplicate_fields_are_rejected() {
        for dup in [
            format!("sr=x&sig={SIG}&se=1&sr=x"),
            format!("sr=x&sig={SIG}&sig={SIG}&se=1"),
            format!("sr=x&sig={SIG}&se=1&se=1"),
            format!("sr=x&sig={SIG}&se=1&skn=a&skn=a"),
        ] {
            assert_eq!(malformed(&with_fields(&dup)), "duplicate field", "{dup}");
        }
    }

    #[test]
    fn missing_fields_are_rejected() {
        assert_eq!(
            malformed(&with_fields(&format!("sig={SIG}&se=1"))),
            "missing sr"
        );
        assert_eq!(
            malformed(&with_fields(&format!("sr=x&sig={SIG}"))),
            "missing se"
        );
        assert_eq!(malformed(&with_fields("sr=x&se=1")), "missing sig");
        assert_eq!(
            malformed(&with_fields(&format!("sr=&sig={SIG}&se=1"))),
            "empty sr"
        );
        assert_eq!(malformed("SharedAccessSignature "), "no fields");
        assert_eq!(malformed("SharedAccessSignature sr"), "field without '='");
    }

    #[test]
    fn unknown_and_nameless_fields_are_rejected() {
        let unknown = format!("sr=x&sig={SIG}&se=1&foo=bar");
        assert_eq!(malformed(&with_fields(&unknown)), "unknown field");
        let upper = format!("SR=x&sig={SIG}&se=1");
        assert_eq!(malformed(&with_fields(&upper)), "unknown field");
        let empty = format!("sr=x&&sig={SIG}&se=1");
        assert_eq!(malformed(&with_fields(&empty)), "field without '='");
        let nameless = format!("sr=x&=1&sig={SIG}&se=1");
        assert_eq!(malformed(&with_fields(&nameless)), "unknown field");
    }

    #[test]
    fn bad_signatures_are_rejected() {
        let cases = [
            ("not*base64", "sig is not base64"),
            ("", "sig is not 32 bytes"),
            (
                "jFfflPGD-46OqssgLa1p2lQJewa99l7oFYFW9vj8WWQ%3D",
                "sig is not base64",
            ),
            ("AAAA", "sig is not 32 bytes"),
            (
                "jFfflPGD%2F46OqssgLa1p2lQJewa99l7oFYFW9vj8WWQ%3",
                "bad encoding in sig",
            ),
            (
                "jFfflPGD%ZZ46OqssgLa1p2lQJewa99l7oFYFW9vj8WWQ%3D",
                "bad encoding in sig",
            ),
        ];
        for (sig, why) in cases {
            assert_eq!(
                malformed(&with_fields(&format!("sr=x&sig={sig}&se=1"))),
                why,
                "{sig}"
            );
        }
        for len in [31, 33, 64] {
            let sig = B64
                .encode(vec![7u8; len])
                .replace('/', "%2F")
                .replace('=', "%3D");
            let token = with_fields(&format!("sr=x&sig={sig}&se=1"));
            assert_eq!(malformed(&token), "sig is not 32 bytes", "{len}");
        }
        // Padding is optional.
        let unpadded = SIG.trim_end_matches("%3D");
        let sig_of = |sig: &str| {
            let text = with_fields(&format!("sr=x&sig={sig}&se=1"));
            SasToken::parse(&text).unwrap().sig
        };
        assert_eq!(sig_of(unpadded), sig_of(SIG));
    }

    #[test]
    fn bad_expiries_are_rejected() {
        for se in ["", "abc", "-1", "+1", "1.5", " 1", "0x10", "1e9"] {
            let token = with_fields(&format!("sr=x&sig={SIG}&se={se}"));
            assert_eq!(malformed(&token), "se is not a decimal number", "{se:?}");
        }
        let overflow = with_fields(&format!("sr=x&sig={SIG}&se=18446744073709551616"));
        assert_eq!(malformed(&overflow), "se out of range");
        let max = with_fields(&format!("sr=x&sig={SIG}&se=18446744073709551615"));
        assert_eq!(SasToken::parse(&max).unwrap().expiry(), u64::MAX);
    }

    #[test]
    fn length_is_bounded() {
        let filler = "a".repeat(MAX_TOKEN_LEN);
        let fields = format!("sr={filler}&sig={SIG}&se=1");
        assert_eq!(malformed(&with_fields(&fields)), "token too long");
        let head = with_fields(&format!("sig={SIG}&se=1&sr="));
        let exact = format!("{head}{}", "a".repeat(MAX_TOKEN_LEN - head.len()));
        assert_eq!(exact.len(), MAX_TOKEN_LEN);
        assert!(SasToken::parse(&exact).is_ok());
    }

    #[test]
    fn audience_decoding_is_strict() {
        let parse = |sr: &str| {
            let token = with_fields(&format!("sr={sr}&sig={SIG}&se=1"));
            SasToken::parse(&token).unwrap().audience()
        };
        assert_eq!(
            parse("0ne%2Fregistrations%2fdev").unwrap(),
            "0ne/registrations/dev"
        );
        assert_eq!(parse("a+b").unwrap(), "a+b");
        assert_eq!(parse("caf%C3%A9").unwrap(), "café");
        assert!(matches!(parse("a%2"), Err(SasError::Malformed(_))));
        assert!(matches!(parse("a%g0"), Err(SasError::Malformed(_))));
        assert!(matches!(parse("a%FF"), Err(SasError::Malformed(_))));
    }

    #[test]
    fn debug_hides_the_signature() {
        let shown = format!("{:?}", SasToken::parse(NODE).unwrap());
        assert!(shown.contains("0ne00000001/registrations/dev-1"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains('['), "sig bytes leaked: {shown}");
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            if let Ok(t) = SasToken::parse(&s) {
                let _ = t.audience();
            }
        }

        #[test]
        fn never_panics_on_token_shaped_strings(
            s in "[ \t]{0,2}SharedAccessSignature[ ]{0,2}((sr|sig|se|skn|x|)=?[%A-Za-z0-9+/=:._ é-]{0,50}&?){0,6}"
        ) {
            if let Ok(t) = SasToken::parse(&s) {
                let _ = t.audience();
                prop_assert!(s.contains("sr=") && s.contains("sig=") && s.contains("se="));
            }
        }
    }
}
