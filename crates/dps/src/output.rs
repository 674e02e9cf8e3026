//! Printing results: a compact table (one line per item) for people, JSON for scripts.

use anyhow::Result;
use dps_client::DeviceRegistrationResult;
use dps_types::{
    AttestationMechanism, DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment,
    ProvisioningStatus,
};
use serde::Serialize;
use serde_json::{Value, json};

/// Where and how results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON instead of text.
    pub json: bool,
}

impl Output {
    pub fn registered(self, r: &DeviceRegistrationResult) -> Result<()> {
        if self.json {
            return print_json(r);
        }
        let s = &r.state;
        println!(
            "assigned {} to {} as {}",
            s.registration_id,
            s.assigned_hub.as_ref().map_or("-", |h| h.as_str()),
            s.device_id.as_deref().unwrap_or("-"),
        );
        Ok(())
    }

    pub fn enrollment_created(self, e: &IndividualEnrollment, generated_keys: bool) -> Result<()> {
        if self.json {
            return print_json(e);
        }
        println!("created enrollment {}", e.registration_id);
        if generated_keys {
            print_keys(&e.attestation);
        }
        Ok(())
    }

    pub fn group_created(self, g: &EnrollmentGroup, generated_keys: bool) -> Result<()> {
        if self.json {
            return print_json(g);
        }
        println!("created enrollment group {}", g.enrollment_group_id);
        if generated_keys {
            print_keys(&g.attestation);
        }
        Ok(())
    }

    pub fn enrollments(self, all: &[IndividualEnrollment], show_keys: bool) -> Result<()> {
        if self.json {
            return print_json_one_or_many(all);
        }
        if all.is_empty() {
            println!("no enrollments");
            return Ok(());
        }
        let rows = all
            .iter()
            .map(|e| {
                let reg = e.registration_state.as_ref();
                vec![
                    e.registration_id.to_string(),
                    status(e.provisioning_status).into(),
                    attestation(&e.attestation).into(),
                    e.effective_device_id(),
                    hubs(&e.iot_hubs, e.iot_hub_host_name.as_deref()),
                    reg.map_or_else(|| "-".into(), registration_summary),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "REGISTRATION ID",
                    "STATUS",
                    "ATTESTATION",
                    "DEVICE ID",
                    "HUBS",
                    "REGISTRATION"
                ],
                rows
            )
        );
        if show_keys {
            for e in all {
                print_keys(&e.attestation);
            }
        }
        Ok(())
    }

    pub fn groups(self, all: &[EnrollmentGroup], show_keys: bool) -> Result<()> {
        if self.json {
            return print_json_one_or_many(all);
        }
        if all.is_empty() {
            println!("no enrollment groups");
            return Ok(());
        }
        let rows = all
            .iter()
            .map(|g| {
                vec![
                    g.enrollment_group_id.to_string(),
                    status(g.provisioning_status).into(),
                    attestation(&g.attestation).into(),
                    hubs(&g.iot_hubs, g.iot_hub_host_name.as_deref()),
                    g.allocation_policy
                        .and_then(|p| serde_json::to_value(p).ok())
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "default".into()),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["GROUP ID", "STATUS", "ATTESTATION", "HUBS", "ALLOCATION"],
                rows
            )
        );
        if show_keys {
            for g in all {
                print_keys(&g.attestation);
            }
        }
        Ok(())
    }

    pub fn registrations(self, all: &[DeviceRegistrationState]) -> Result<()> {
        if self.json {
            return print_json_one_or_many(all);
        }
        if all.is_empty() {
            println!("no registrations");
            return Ok(());
        }
        let rows = all
            .iter()
            .map(|r| {
                vec![
                    r.registration_id.to_string(),
                    enum_text(&r.status),
                    r.assigned_hub
                        .as_ref()
                        .map_or_else(|| "-".into(), ToString::to_string),
                    r.device_id.clone().unwrap_or_else(|| "-".into()),
                    r.last_updated_date_time_utc
                        .or(r.created_date_time_utc)
                        .map_or_else(|| "-".into(), |t| t.to_wire()),
                    match (r.error_code, &r.error_message) {
                        (Some(c), Some(m)) => format!("{c}: {m}"),
                        (Some(c), None) => c.to_string(),
                        (None, Some(m)) => m.clone(),
                        (None, None) => "-".into(),
                    },
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "REGISTRATION ID",
                    "STATUS",
                    "HUB",
                    "DEVICE ID",
                    "UPDATED",
                    "ERROR"
                ],
                rows
            )
        );
        Ok(())
    }

    pub fn deleted(self, kind: &str, id: &str) -> Result<()> {
        if self.json {
            return print_json(&json!({ "deleted": id }));
        }
        println!("deleted {kind} {id}");
        Ok(())
    }

    /// `{"idScope":"…","operations":{"<kind>":n,…},"total":n}`.
    pub fn operations(self, ops: &Value) -> Result<()> {
        if self.json {
            return print_json(ops);
        }
        let mut rows = Vec::new();
        if let Some(map) = ops.get("operations").and_then(Value::as_object) {
            for (kind, n) in map {
                rows.push(vec![kind.clone(), n.to_string()]);
            }
        }
        if let Some(total) = ops.get("total") {
            rows.push(vec!["total".into(), total.to_string()]);
        }
        if let Some(scope) = ops.get("idScope").and_then(Value::as_str) {
            println!("id scope {scope}");
        }
        print!("{}", table(&["OPERATION", "COUNT"], rows));
        Ok(())
    }
}

fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `get` prints the object, `list` the array.
fn print_json_one_or_many<T: Serialize>(all: &[T]) -> Result<()> {
    match all {
        [one] => print_json(one),
        many => print_json(many),
    }
}

fn print_keys(a: &AttestationMechanism) {
    if let Some(sk) = a.symmetric_key() {
        if let Some(k) = &sk.primary_key {
            println!("primary key:   {}", k.expose_base64());
        }
        if let Some(k) = &sk.secondary_key {
            println!("secondary key: {}", k.expose_base64());
        }
    }
}

fn status(s: ProvisioningStatus) -> &'static str {
    match s {
        ProvisioningStatus::Enabled => "enabled",
        ProvisioningStatus::Disabled => "disabled",
    }
}

fn attestation(a: &AttestationMechanism) -> &'static str {
    match a {
        AttestationMechanism::SymmetricKey(_) => "symmetricKey",
        AttestationMechanism::X509(_) => "x509",
        AttestationMechanism::Tpm(_) => "tpm",
    }
}

fn hubs(hubs: &[String], legacy: Option<&str>) -> String {
    match (hubs, legacy) {
        ([], None) => "all".into(),
        ([], Some(h)) => h.to_owned(),
        (hs, _) => hs.join(","),
    }
}

/// `assigned@hub-a.example.net`, `failed`, …
fn registration_summary(r: &DeviceRegistrationState) -> String {
    let status = enum_text(&r.status);
    match &r.assigned_hub {
        Some(hub) => format!("{status}@{hub}"),
        None => status,
    }
}

/// The wire spelling of a serde enum (`assigned`, `initialAssignment`, …).
fn enum_text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["ID", "STATUS"],
            vec![
                vec!["dev-1".into(), "enabled".into()],
                vec!["a".into(), "disabled".into()],
            ],
        );
        assert_eq!(t, "ID     STATUS\ndev-1  enabled\na      disabled\n");
    }

    #[test]
    fn summaries() {
        let r: DeviceRegistrationState = serde_json::from_str(
            r#"{"registrationId":"dev-1","status":"assigned","assignedHub":"hub-a.example.net"}"#,
        )
        .unwrap();
        assert_eq!(registration_summary(&r), "assigned@hub-a.example.net");
        assert_eq!(hubs(&[], None), "all");
        assert_eq!(hubs(&["a".into(), "b".into()], None), "a,b");
    }
}
