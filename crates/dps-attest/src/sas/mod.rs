//! Shared Access Signature (SAS) tokens, as sent by the Azure IoT device and service SDKs.
//!
//! ```text
//! SharedAccessSignature sr=<resource>&sig=<signature>&se=<expiry>[&skn=<key name>]
//! signature = percent-encode(base64(HMAC-SHA256(key, <sr exactly as sent> + "\n" + <se as sent>)))
//! ```
//!
//! Clients disagree on whether `sr` is percent-encoded (Node sends it raw, Python and .NET
//! encode it, azure-iot-sdk-c uses lower-case hex), but each signs the `sr` in the form it sends.
//! So the server signs [`SasToken::resource_raw`] verbatim and compares the *decoded*
//! [`SasToken::audience`] with what the request is for. Field order varies too, and `skn` is
//! absent in some device tokens; [`SasToken::parse`] accepts all of these.
//!
//! Device tokens: [`verify_device`] with the enrollment's keys, or for group enrollments with
//! [`derive_device_key`] of each candidate group key. Service API tokens: [`verify_service`]
//! with the keys of the policy named by [`SasToken::key_name`]. Clients: [`generate_token`].

mod encoding;
mod key;
mod token;
mod verify;

use std::fmt::Write as _;

use base64::Engine as _;
use percent_encoding::utf8_percent_encode;

use encoding::{B64, ENCODE_SET};

pub use key::{SigningKey, derive_device_key, derive_device_key_base64, derive_device_key_bytes};
pub use token::{MAX_TOKEN_LEN, SasToken};
pub use verify::{verify_device, verify_service};

/// Why a token or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SasError {
    /// The token text does not follow the SAS grammar; the reason is for logs, not for clients.
    #[error("malformed sas token: {0}")]
    Malformed(&'static str),
    /// `se` is not after `now`.
    #[error("sas token expired")]
    Expired,
    /// The decoded `sr` names another registration or host.
    #[error("sas token audience mismatch")]
    AudienceMismatch,
    /// No candidate key produced the token's signature.
    #[error("sas signature mismatch")]
    SignatureMismatch,
    /// A service token without `skn`, so no policy can be chosen.
    #[error("sas token has no key name")]
    MissingKeyName,
    /// A key is not base64 or is empty.
    #[error("invalid symmetric key")]
    BadKey,
}

/// Builds a token for `resource` (decoded, e.g. `0ne00000001/registrations/dev-1` or a host
/// name) that expires at `expiry` (unix seconds).
///
/// `sr` is percent-encoded with upper-case hex (everything except `A-Z a-z 0-9 - . _ ~`) and
/// signed in that encoded form; `sig` is percent-encoded base64. Fields come in the order
/// `sr, sig, se, skn`, with `skn` only when `key_name` is given. The caller picks `expiry`
/// (e.g. `now + 3600`): this crate reads no clock.
///
/// Round trip: [`SasToken::parse`] accepts the result and [`SasToken::audience`] returns
/// `resource`, unless `resource` is empty or the token exceeds [`MAX_TOKEN_LEN`].
#[must_use]
pub fn generate_token(
    resource: &str,
    key: &SigningKey,
    expiry: u64,
    key_name: Option<&str>,
) -> String {
    let sr = utf8_percent_encode(resource, ENCODE_SET).to_string();
    let se = expiry.to_string();
    let sig = B64.encode(key.sign_parts(&[sr.as_bytes(), b"\n", se.as_bytes()]));
    let sig = utf8_percent_encode(&sig, ENCODE_SET);
    let mut token = format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}");
    if let Some(name) = key_name {
        // Writing to a String cannot fail.
        let _ = write!(token, "&skn={}", utf8_percent_encode(name, ENCODE_SET));
    }
    token
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_token_matches_python_capture() {
        // Python's device SDK token from sdk-wire-captures.md §3, rebuilt byte for byte.
        let key = SigningKey::from_base64("dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==").unwrap();
        let token = generate_token("0ne00000001/registrations/dev-1", &key, 1_795_769_679, None);
        assert_eq!(
            token,
            "SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fdev-1\
             &sig=k5J2ASGu0qvKHN8t2Z7JDovqfpsdfX4gXq91AGo2rOE%3D&se=1795769679"
        );
    }

    #[test]
    fn generated_token_matches_protocol_vector() {
        // dps-device-protocol.md §6.4, upper-case `sr`, with skn.
        let key = SigningKey::from_base64("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=").unwrap();
        let rid = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
        let token = generate_token(
            &format!("0ne00111111/registrations/{rid}"),
            &key,
            1_700_000_000,
            Some("registration"),
        );
        assert_eq!(
            token,
            format!(
                "SharedAccessSignature sr=0ne00111111%2Fregistrations%2F{rid}\
                 &sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=1700000000&skn=registration"
            )
        );
    }

    #[test]
    fn generated_token_encodes_reserved_characters() {
        let key = SigningKey::from_bytes(b"k");
        let token = generate_token("a b+c/d:1~x", &key, 5, Some("my policy&x"));
        let parsed = SasToken::parse(&token).unwrap();
        assert_eq!(parsed.resource_raw(), "a%20b%2Bc%2Fd%3A1~x");
        assert_eq!(parsed.audience().unwrap(), "a b+c/d:1~x");
        assert_eq!(parsed.key_name(), Some("my policy&x"));
        assert!(parsed.verify_signature(&key));
    }

    #[test]
    fn errors_display_short_lowercase() {
        assert_eq!(
            SasError::Malformed("missing sr").to_string(),
            "malformed sas token: missing sr"
        );
        assert_eq!(SasError::Expired.to_string(), "sas token expired");
        assert_eq!(SasError::BadKey.to_string(), "invalid symmetric key");
    }

    proptest! {
        #[test]
        fn device_token_round_trips(
            scope in "0ne[0-9A-F]{8}",
            rid in "[A-Za-z0-9._:-]{1,128}",
            expiry in 1u64..,
            skn in proptest::option::of("[a-z]{1,12}"),
            key_bytes in proptest::collection::vec(any::<u8>(), 1..80),
        ) {
            let key = SigningKey::from_bytes(&key_bytes);
            let other = SigningKey::from_bytes(b"not the key");
            let resource = format!("{scope}/registrations/{rid}");
            let text = generate_token(&resource, &key, expiry, skn.as_deref());
            let token = SasToken::parse(&text).unwrap();
            prop_assert_eq!(token.audience().unwrap(), resource);
            prop_assert_eq!(token.expiry(), expiry);
            prop_assert_eq!(token.key_name(), skn.as_deref());
            prop_assert_eq!(verify_device(&token, &scope, &rid, &[&other, &key], expiry - 1), Ok(1));
            prop_assert_eq!(
                verify_device(&token, &scope, &rid, &[&other], expiry - 1),
                Err(SasError::SignatureMismatch)
            );
            prop_assert_eq!(
                verify_device(&token, &scope, &rid, &[&key], expiry),
                Err(SasError::Expired)
            );
        }

        #[test]
        fn service_token_round_trips(
            host in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}",
            port in proptest::option::of(1u16..),
            expiry in 1u64..,
            policy in "[A-Za-z0-9]{1,30}",
        ) {
            let key = SigningKey::from_bytes(b"service key");
            let resource = match port {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            let text = generate_token(&resource, &key, expiry, Some(&policy));
            let token = SasToken::parse(&text).unwrap();
            prop_assert_eq!(token.key_name(), Some(policy.as_str()));
            prop_assert_eq!(verify_service(&token, &host, &[&key], expiry - 1), Ok(0));
        }
    }
}
