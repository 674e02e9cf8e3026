//! Symmetric keys: decoding, HMAC-SHA256 signing and enrollment-group key derivation.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::SasError;
use super::encoding::B64;

type HmacSha256 = Hmac<Sha256>;

/// A decoded symmetric key with its HMAC-SHA256 state precomputed.
///
/// Building a `SigningKey` hashes the key into the HMAC inner and outer pads once; every
/// [`sign`](Self::sign) then starts from a copy of that state, so checking a token against many
/// candidate keys costs two SHA-256 compressions per key plus the message. Decode enrollment keys
/// once and keep the `SigningKey`s around.
///
/// `Debug` never prints the key material.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacSha256,
    bytes: Box<[u8]>,
}

impl SigningKey {
    /// Decodes a base64 key as shown in the Azure portal and in enrollment JSON.
    ///
    /// Standard alphabet; the trailing `=` padding may be present or omitted. An empty key is
    /// rejected.
    pub fn from_base64(s: &str) -> Result<Self, SasError> {
        let bytes = B64.decode(s).map_err(|_| SasError::BadKey)?;
        if bytes.is_empty() {
            return Err(SasError::BadKey);
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// Wraps raw key bytes. Any length is accepted, as HMAC allows.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        // HMAC (RFC 2104) hashes keys longer than the block and zero-pads the rest, so handing
        // the block-sized key to the infallible `new` is the same function as `new_from_slice`.
        let mut block = hmac::digest::Key::<HmacSha256>::default();
        if bytes.len() > block.len() {
            let digest = Sha256::digest(bytes);
            block[..digest.len()].copy_from_slice(&digest);
        } else {
            block[..bytes.len()].copy_from_slice(bytes);
        }
        Self {
            mac: HmacSha256::new(&block),
            bytes: bytes.into(),
        }
    }

    /// HMAC-SHA256 of `msg` under this key.
    #[must_use]
    pub fn sign(&self, msg: &[u8]) -> [u8; 32] {
        self.sign_parts(&[msg])
    }

    /// HMAC-SHA256 of the concatenation of `parts`, without building it.
    pub(crate) fn sign_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The key as padded standard base64, the form devices are configured with.
    #[must_use]
    pub fn to_base64(&self) -> String {
        B64.encode(&self.bytes)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

/// Derives a group member's device key: `HMAC-SHA256(groupKey, registrationId)`.
///
/// The registration id is hashed exactly as given (UTF-8, no case folding), as the Azure
/// tooling does. Use [`SigningKey::to_base64`] to hand the result to a device.
#[must_use]
pub fn derive_device_key(group_key: &SigningKey, registration_id: &str) -> SigningKey {
    SigningKey::from_bytes(&derive_device_key_bytes(group_key, registration_id))
}

/// The raw bytes of [`derive_device_key`], for a caller that only encodes the derived key (a
/// hub credential) and so needs no HMAC state for it: one HMAC instead of one HMAC plus the pad
/// set-up.
#[must_use]
pub fn derive_device_key_bytes(group_key: &SigningKey, registration_id: &str) -> [u8; 32] {
    group_key.sign(registration_id.as_bytes())
}

/// [`derive_device_key`] on base64 text: `base64(HMAC-SHA256(base64decode(groupKey), registrationId))`.
pub fn derive_device_key_base64(
    group_key_b64: &str,
    registration_id: &str,
) -> Result<String, SasError> {
    let group_key = SigningKey::from_base64(group_key_b64)?;
    Ok(derive_device_key(&group_key, registration_id).to_base64())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn captured_group_derivation() {
        // sdk-wire-captures.md §0/§3.
        let derived = derive_device_key_base64(
            "dGVzdC1rZXktZ3JvdXAtMS0wMTIzNDU2Nzg5YWJjZGU=",
            "dev-group-1",
        );
        assert_eq!(
            derived.unwrap(),
            "DdaLsWSiNOPQJt1Q4vgh/11z0X5GncRxydGMd6NXlhI="
        );
    }

    #[test]
    fn documented_group_derivation_with_block_sized_key() {
        // dps-device-protocol.md §6.4: a 64-byte group key (exactly one SHA-256 block).
        let group = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
        assert_eq!(B64.decode(group).unwrap().len(), 64);
        let derived = derive_device_key_base64(group, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6");
        assert_eq!(
            derived.unwrap(),
            "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
        );
    }

    #[test]
    fn derived_bytes_are_the_derived_key() {
        let group =
            SigningKey::from_base64("dGVzdC1rZXktZ3JvdXAtMS0wMTIzNDU2Nzg5YWJjZGU=").unwrap();
        let bytes = derive_device_key_bytes(&group, "dev-group-1");
        assert_eq!(
            B64.encode(bytes),
            "DdaLsWSiNOPQJt1Q4vgh/11z0X5GncRxydGMd6NXlhI="
        );
        assert_eq!(
            SigningKey::from_bytes(&bytes).sign(b"x"),
            derive_device_key(&group, "dev-group-1").sign(b"x")
        );
    }

    #[test]
    fn derivation_is_case_sensitive_in_the_registration_id() {
        let group = SigningKey::from_bytes(b"group");
        assert_ne!(
            derive_device_key(&group, "dev-1").to_base64(),
            derive_device_key(&group, "DEV-1").to_base64()
        );
    }

    #[test]
    fn rfc4231_case_2() {
        let key = SigningKey::from_bytes(b"Jefe");
        let mac = key.sign(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn long_and_short_keys_match_the_reference_hmac() {
        for len in [0usize, 1, 16, 32, 63, 64, 65, 100, 200] {
            let raw: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let reference = HmacSha256::new_from_slice(&raw)
                .unwrap()
                .chain_update(b"msg")
                .finalize()
                .into_bytes();
            assert_eq!(
                SigningKey::from_bytes(&raw).sign(b"msg")[..],
                reference[..],
                "len {len}"
            );
        }
    }

    #[test]
    fn sign_parts_equals_sign_of_concatenation() {
        let key = SigningKey::from_bytes(b"k");
        assert_eq!(key.sign_parts(&[b"ab", b"\n", b"c"]), key.sign(b"ab\nc"));
        assert_ne!(key.sign(b"ab\nc"), key.sign(b"ab\nd"));
    }

    #[test]
    fn base64_round_trip_and_padding() {
        let padded = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";
        let key = SigningKey::from_base64(padded).unwrap();
        assert_eq!(key.to_base64(), padded);
        let unpadded = SigningKey::from_base64(padded.trim_end_matches('=')).unwrap();
        assert_eq!(unpadded.sign(b"x"), key.sign(b"x"));
    }

    #[test]
    fn bad_keys_are_rejected() {
        for bad in ["", "not base64!", "dGVzdA=x", "-_-_", "dGVzdC1rZXk=\n"] {
            assert_eq!(
                SigningKey::from_base64(bad).unwrap_err(),
                SasError::BadKey,
                "{bad:?}"
            );
        }
        assert_eq!(
            derive_device_key_base64("%%%", "dev").unwrap_err(),
            SasError::BadKey
        );
    }

    #[test]
    fn debug_does_not_print_key_material() {
        let key = SigningKey::from_base64("dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==").unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "SigningKey { .. }");
    }
}
