//! The two encodings inside a token: base64 for keys and signatures, percent-encoding for
//! `sr`, `sig` and `skn`.

use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Standard alphabet; encodes with padding, decodes with or without it.
pub(super) const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Everything but the RFC 3986 unreserved characters, like Python's `quote(s, safe="")`,
/// .NET's `WebUtility.UrlEncode` (minus its `+` for space) and JavaScript's
/// `encodeURIComponent` (minus its `!'()*`).
pub(super) const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Strict percent-decoding: every `%` must start a two-hex-digit escape; `+` is literal.
pub(super) fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

pub(super) fn percent_decode_utf8(s: &str) -> Option<String> {
    String::from_utf8(percent_decode(s)?).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use percent_encoding::utf8_percent_encode;
    use proptest::prelude::*;

    #[test]
    fn decodes_both_hex_cases_and_keeps_plus() {
        assert_eq!(
            percent_decode_utf8("0ne%2Fregistrations%2fdev").unwrap(),
            "0ne/registrations/dev"
        );
        assert_eq!(percent_decode_utf8("a+b%20c").unwrap(), "a+b c");
        assert_eq!(percent_decode_utf8("caf%C3%A9").unwrap(), "café");
        assert_eq!(percent_decode_utf8("").unwrap(), "");
    }

    #[test]
    fn rejects_malformed_escapes_and_non_utf8() {
        for bad in ["%", "a%2", "a%g0", "%0g", "%%41"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
        assert_eq!(percent_decode("a%FF"), Some(vec![b'a', 0xff]));
        assert_eq!(percent_decode_utf8("a%FF"), None);
    }

    #[test]
    fn encode_set_keeps_only_unreserved() {
        let all: String = (0x20u8..0x7f).map(char::from).collect();
        let encoded = utf8_percent_encode(&all, ENCODE_SET).to_string();
        let kept: String = encoded
            .split('%')
            .map(|chunk| chunk.get(2..).unwrap_or(""))
            .collect();
        let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        assert_eq!(
            kept,
            all.chars().filter(|&c| unreserved(c)).collect::<String>()
        );
        assert!(encoded.contains("%2F") && encoded.contains("%2B") && encoded.contains("%3D"));
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(s in any::<String>()) {
            let encoded = utf8_percent_encode(&s, ENCODE_SET).to_string();
            prop_assert_eq!(percent_decode_utf8(&encoded), Some(s));
        }
    }
}
