//! Server-side checks: expiry, audience, then signature against candidate keys.
//!
//! The cheap checks run first so that garbage tokens cost no HMAC. Every failure should become
//! the same 401 on the wire; the distinct errors are for logs.

use super::{SasError, SasToken, SigningKey};

const REGISTRATIONS: &[u8] = b"/registrations/";

/// Checks a device registration token and returns the index in `keys` of the key that signed it.
///
/// * `se` must be after `now` (unix seconds); `se <= now` is [`SasError::Expired`]. There is no
///   maximum lifetime. To tolerate clock skew, pass `now - skew`.
/// * The decoded `sr` must equal `{id_scope}/registrations/{registration_id}`, ignoring ASCII
///   case (some clients lower-case the whole audience). A host-prefixed `sr` is not accepted.
/// * `skn` is ignored: clients send `registration` or nothing.
/// * `keys` are tried in order: an individual enrollment's primary and secondary keys, or keys
///   derived with [`super::derive_device_key`] from each candidate group's keys.
pub fn verify_device(
    token: &SasToken<'_>,
    id_scope: &str,
    registration_id: &str,
    keys: &[&SigningKey],
    now: u64,
) -> Result<usize, SasError> {
    check_expiry(token, now)?;
    if !device_audience_matches(&token.audience()?, id_scope, registration_id) {
        return Err(SasError::AudienceMismatch);
    }
    matching_key(token, keys)
}

/// Checks a service API token and returns the index in `keys` of the key that signed it.
///
/// Pick `keys` from the policy named by [`SasToken::key_name`]; a token without `skn` is
/// [`SasError::MissingKeyName`]. The decoded `sr`, with a leading `https://` removed and a
/// trailing `:port` tolerated, must equal `host_name` (given without a port) ignoring ASCII
/// case. Expiry is checked as in [`verify_device`].
pub fn verify_service(
    token: &SasToken<'_>,
    host_name: &str,
    keys: &[&SigningKey],
    now: u64,
) -> Result<usize, SasError> {
    check_expiry(token, now)?;
    if token.key_name().is_none() {
        return Err(SasError::MissingKeyName);
    }
    if !service_audience_matches(&token.audience()?, host_name) {
        return Err(SasError::AudienceMismatch);
    }
    matching_key(token, keys)
}

fn check_expiry(token: &SasToken<'_>, now: u64) -> Result<(), SasError> {
    if token.expiry() > now {
        Ok(())
    } else {
        Err(SasError::Expired)
    }
}

fn matching_key(token: &SasToken<'_>, keys: &[&SigningKey]) -> Result<usize, SasError> {
    keys.iter()
        .position(|key| token.verify_signature(key))
        .ok_or(SasError::SignatureMismatch)
}

fn device_audience_matches(audience: &str, id_scope: &str, registration_id: &str) -> bool {
    let rest = audience.as_bytes();
    let Some((scope, rest)) = rest.split_at_checked(id_scope.len()) else {
        return false;
    };
    let Some((separator, rid)) = rest.split_at_checked(REGISTRATIONS.len()) else {
        return false;
    };
    scope.eq_ignore_ascii_case(id_scope.as_bytes())
        && separator.eq_ignore_ascii_case(REGISTRATIONS)
        && rid.eq_ignore_ascii_case(registration_id.as_bytes())
}

fn service_audience_matches(audience: &str, host_name: &str) -> bool {
    let scheme = "https://";
    let host = match audience.get(..scheme.len()) {
        Some(head) if head.eq_ignore_ascii_case(scheme) => &audience[scheme.len()..],
        _ => audience,
    };
    if host.eq_ignore_ascii_case(host_name) {
        return true;
    }
    match host.rsplit_once(':') {
        Some((host, port)) => {
            (1..=5).contains(&port.len())
                && port.bytes().all(|b| b.is_ascii_digit())
                && host.eq_ignore_ascii_case(host_name)
        }
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sas::{derive_device_key, generate_token};

    const SCOPE: &str = "0ne00000001";
    const DEV1_KEY: &str = "dGVzdC1rZXktZGV2LTEtMDEyMzQ1Njc4OWFiY2RlZg==";
    const GROUP_KEY: &str = "dGVzdC1rZXktZ3JvdXAtMS0wMTIzNDU2Nzg5YWJjZGU=";
    const SERVICE_KEY: &str = "dGVzdC1rZXktc2VydmljZS0wMTIzNDU2Nzg5YWJjZGU=";

    // sdk-wire-captures.md §3: (client, registration id, token).
    const DEVICE_CAPTURES: [(&str, &str, &str); 3] = [
        (
            "node http",
            "dev-1",
            "SharedAccessSignature sr=0ne00000001/registrations/dev-1&sig=jFfflPGD%2F46OqssgLa1p2lQJewa99l7oFYFW9vj8WWQ%3D&skn=registration&se=1795769664",
        ),
        (
            "python mqtt",
            "dev-1",
            "SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fdev-1&sig=k5J2ASGu0qvKHN8t2Z7JDovqfpsdfX4gXq91AGo2rOE%3D&se=1795769679",
        ),
        (
            "python mqtt group",
            "dev-group-1",
            "SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fdev-group-1&sig=Bl1Ts5zmXKd8RVzl1M3M0SfASq%2FMN2EpC2CpJztMjsQ%3D&se=1795769676",
        ),
    ];
    const SERVICE_CAPTURES: [(&str, &str); 3] = [
        (
            "node",
            "SharedAccessSignature sr=localhost&sig=J2lmW4izNaGBVC64ZwP18%2FXm7JHT72Ci0khditZt2O4%3D&skn=provisioningserviceowner&se=1795769676",
        ),
        (
            "python 443",
            "SharedAccessSignature sr=localhost&sig=%2Bxw0YDRtF90a7QIERFE%2B6KYc1SPuxXJufAMa6XBQHJM%3D&se=1795769687&skn=provisioningserviceowner",
        ),
        (
            "python 8443",
            "SharedAccessSignature sr=localhost%3A8443&sig=IYWgx%2BfPIyLnfc4i0t1CS1vfhRGktNvNAAGeAcuUmSY%3D&se=1795769531&skn=provisioningserviceowner",
        ),
    ];

    fn key(b64: &str) -> SigningKey {
        SigningKey::from_base64(b64).unwrap()
    }

    /// The key a device with `rid` signs with: its own for dev-1, derived for the group device.
    fn device_key(rid: &str) -> SigningKey {
        match rid {
            "dev-1" => key(DEV1_KEY),
            _ => derive_device_key(&key(GROUP_KEY), rid),
        }
    }

    #[test]
    fn captured_device_tokens_verify_until_they_expire() {
        for (client, rid, text) in DEVICE_CAPTURES {
            let token = SasToken::parse(text).unwrap();
            let k = device_key(rid);
            let se = token.expiry();
            assert_eq!(
                verify_device(&token, SCOPE, rid, &[&k], se - 1),
                Ok(0),
                "{client}"
            );
            assert_eq!(
                verify_device(&token, SCOPE, rid, &[&k], 0),
                Ok(0),
                "{client}"
            );
            for now in [se, se + 1, u64::MAX] {
                let got = verify_device(&token, SCOPE, rid, &[&k], now);
                assert_eq!(got, Err(SasError::Expired), "{client} at {now}");
            }
        }
    }

    #[test]
    fn captured_group_token_needs_the_derived_key() {
        let (_, rid, text) = DEVICE_CAPTURES[2];
        let token = SasToken::parse(text).unwrap();
        let now = token.expiry() - 10;
        let group = key(GROUP_KEY);
        let got = verify_device(&token, SCOPE, rid, &[&group], now);
        assert_eq!(got, Err(SasError::SignatureMismatch));
        let derived = key("DdaLsWSiNOPQJt1Q4vgh/11z0X5GncRxydGMd6NXlhI=");
        assert_eq!(
            verify_device(&token, SCOPE, rid, &[&group, &derived], now),
            Ok(1)
        );
    }

    #[test]
    fn captured_service_tokens_verify_until_they_expire() {
        let k = key(SERVICE_KEY);
        for (client, text) in SERVICE_CAPTURES {
            let token = SasToken::parse(text).unwrap();
            assert_eq!(
                token.key_name(),
                Some("provisioningserviceowner"),
                "{client}"
            );
            let se = token.expiry();
            assert_eq!(
                verify_service(&token, "localhost", &[&k], se - 1),
                Ok(0),
                "{client}"
            );
            assert_eq!(
                verify_service(&token, "LocalHost", &[&k], se - 1),
                Ok(0),
                "{client}"
            );
            for now in [se, se + 3600] {
                let got = verify_service(&token, "localhost", &[&k], now);
                assert_eq!(got, Err(SasError::Expired), "{client} at {now}");
            }
            let other = verify_service(&token, "dps.example.net", &[&k], se - 1);
            assert_eq!(other, Err(SasError::AudienceMismatch), "{client}");
        }
    }

    #[test]
    fn protocol_vectors_sign_sr_verbatim() {
        // dps-device-protocol.md §6.4: same key, same audience, upper- and lower-case escapes.
        let rid = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
        let k = key("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=");
        let upper = format!(
            "SharedAccessSignature sr=0ne00111111%2Fregistrations%2F{rid}\
             &sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=1700000000&skn=registration"
        );
        let lower = format!(
            "SharedAccessSignature sr=0ne00111111%2fregistrations%2f{rid}\
             &sig=LwAx%2bRfQDq37RAHvptYP8R3382xvZ%2fBntAGlh8Wmu18%3d&se=1700000000&skn=registration"
        );
        for text in [&upper, &lower] {
            let token = SasToken::parse(text).unwrap();
            assert_eq!(
                verify_device(&token, "0ne00111111", rid, &[&k], 1_699_999_999),
                Ok(0)
            );
            let expired = verify_device(&token, "0ne00111111", rid, &[&k], 1_700_000_000);
            assert_eq!(expired, Err(SasError::Expired));
        }
        // Swapping the signatures breaks both: the server must not normalise `sr`.
        let swapped = upper.replace(
            "2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8",
            "LwAx%2BRfQDq37RAHvptYP8R3382xvZ%2FBntAGlh8Wmu18",
        );
        let token = SasToken::parse(&swapped).unwrap();
        let got = verify_device(&token, "0ne00111111", rid, &[&k], 0);
        assert_eq!(got, Err(SasError::SignatureMismatch));
    }

    #[test]
    fn device_audience_must_name_this_registration() {
        let (_, _, text) = DEVICE_CAPTURES[1];
        let token = SasToken::parse(text).unwrap();
        let k = key(DEV1_KEY);
        let now = token.expiry() - 1;
        for (scope, rid) in [
            ("0ne00000002", "dev-1"),
            (SCOPE, "dev-2"),
            (SCOPE, "dev-10"),
            (SCOPE, "dev-"),
            ("0ne0000000", "1/registrations/dev-1"),
            ("", "dev-1"),
        ] {
            let got = verify_device(&token, scope, rid, &[&k], now);
            assert_eq!(got, Err(SasError::AudienceMismatch), "{scope} {rid}");
        }
        let shouting = verify_device(&token, "0NE00000001", "DEV-1", &[&k], now);
        assert_eq!(shouting, Ok(0));
    }

    #[test]
    fn device_audience_variants() {
        let k = key(DEV1_KEY);
        let verify = |resource: &str| {
            let text = generate_token(resource, &k, 100, None);
            let token = SasToken::parse(&text).unwrap();
            verify_device(&token, "0ne0045B3C6", "Dev-1", &[&k], 0)
        };
        // iot-identity-service lower-cases the whole audience.
        assert_eq!(verify("0ne0045b3c6/registrations/dev-1"), Ok(0));
        assert_eq!(verify("0ne0045B3C6/Registrations/DEV-1"), Ok(0));
        let mismatch = Err(SasError::AudienceMismatch);
        assert_eq!(
            verify("dps.example.net/0ne0045B3C6/registrations/Dev-1"),
            mismatch
        );
        assert_eq!(verify("0ne0045B3C6/registrations/Dev-1/"), mismatch);
        assert_eq!(verify("0ne0045B3C6/devices/Dev-1"), mismatch);
        assert_eq!(verify("0ne0045B3C6/registrationZ/Dev-1"), mismatch);
        assert_eq!(verify("0ne0045B3C6|registrations|Dev-1"), mismatch);
        assert_eq!(verify("0ne0045B3C6é/registrations/Dev-1"), mismatch);
    }

    #[test]
    fn device_keys_are_tried_in_order() {
        let (_, rid, text) = DEVICE_CAPTURES[0];
        let token = SasToken::parse(text).unwrap();
        let (right, wrong) = (key(DEV1_KEY), key(SERVICE_KEY));
        let now = token.expiry() - 1;
        assert_eq!(
            verify_device(&token, SCOPE, rid, &[&wrong, &right], now),
            Ok(1)
        );
        assert_eq!(
            verify_device(&token, SCOPE, rid, &[&right, &right], now),
            Ok(0)
        );
        let none = verify_device(&token, SCOPE, rid, &[&wrong, &wrong], now);
        assert_eq!(none, Err(SasError::SignatureMismatch));
        assert_eq!(
            verify_device(&token, SCOPE, rid, &[], now),
            Err(SasError::SignatureMismatch)
        );
    }

    #[test]
    fn device_skn_is_ignored() {
        let k = key(DEV1_KEY);
        let text = generate_token("0ne00000001/registrations/dev-1", &k, 100, Some("whatever"));
        let token = SasToken::parse(&text).unwrap();
        assert_eq!(verify_device(&token, SCOPE, "dev-1", &[&k], 99), Ok(0));
    }

    #[test]
    fn tampered_fields_break_the_signature() {
        let (_, rid, text) = DEVICE_CAPTURES[0];
        let k = key(DEV1_KEY);
        // A later expiry, and an equivalent but differently encoded sr.
        for tampered in [
            text.replace("se=1795769664", "se=1795769665"),
            text.replace("se=1795769664", "se=01795769664"),
            text.replace("sr=0ne00000001/", "sr=0ne00000001%2F"),
            text.replace("dev-1&", "DEV-1&"),
        ] {
            let token = SasToken::parse(&tampered).unwrap();
            let got = verify_device(&token, SCOPE, rid, &[&k], 0);
            assert_eq!(got, Err(SasError::SignatureMismatch), "{tampered}");
        }
    }

    #[test]
    fn service_token_needs_a_key_name() {
        let k = key(SERVICE_KEY);
        let text = generate_token("localhost", &k, 100, None);
        let token = SasToken::parse(&text).unwrap();
        assert_eq!(
            verify_service(&token, "localhost", &[&k], 0),
            Err(SasError::MissingKeyName)
        );
    }

    #[test]
    fn service_audience_variants() {
        let k = key(SERVICE_KEY);
        let verify = |resource: &str| {
            let text = generate_token(resource, &k, 100, Some("owner"));
            let token = SasToken::parse(&text).unwrap();
            verify_service(&token, "mydps.azure-devices-provisioning.net", &[&k], 0)
        };
        for ok in [
            "mydps.azure-devices-provisioning.net",
            "MyDps.Azure-Devices-Provisioning.NET",
            "https://mydps.azure-devices-provisioning.net",
            "HTTPS://mydps.azure-devices-provisioning.net",
            "mydps.azure-devices-provisioning.net:443",
            "https://mydps.azure-devices-provisioning.net:8443",
        ] {
            assert_eq!(verify(ok), Ok(0), "{ok}");
        }
        for bad in [
            "otherdps.azure-devices-provisioning.net",
            "mydps.azure-devices-provisioning.net.evil.com",
            "mydps.azure-devices-provisioning.net/enrollments",
            "mydps.azure-devices-provisioning.net:",
            "mydps.azure-devices-provisioning.net:123456",
            "mydps.azure-devices-provisioning.net:44a",
            "http://mydps.azure-devices-provisioning.net",
            "https://https://mydps.azure-devices-provisioning.net",
            "https://",
        ] {
            assert_eq!(verify(bad), Err(SasError::AudienceMismatch), "{bad}");
        }
    }
}
