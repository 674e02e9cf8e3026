//! Printing results: a compact table (one line per item) for people, JSON for scripts.
//!
//! [`Output`] has one method per kind of result; enrollments and enrollment groups share
//! [`Output::created`] and [`Output::records`] through the [`Record`] trait, which gives their
//! nouns, table columns and keys.

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
    /// A `dps load` report: its text, or its JSON.
    pub fn load_report(self, text: &str, json: &Value) -> Result<()> {
        if self.json {
            return print_json(json);
        }
        print!("{text}");
        Ok(())
    }

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

    /// `created enrollment dev-1` (and the keys when the service generated them), or the
    /// record as JSON.
    pub fn created<R: Record>(self, r: &R, generated_keys: bool) -> Result<()> {
        if self.json {
            return print_json(r);
        }
        println!("created {} {}", R::KIND, r.id());
        if generated_keys {
            print_keys(r.attestation());
        }
        Ok(())
    }

    /// One table row per record (and their keys when asked), or JSON.
    pub fn records<R: Record>(self, all: &[R], show_keys: bool) -> Result<()> {
        if self.json {
            return print_json_one_or_many(all);
        }
        if all.is_empty() {
            println!("no {}", R::PLURAL);
            return Ok(());
        }
        let rows = all.iter().map(R::row).collect();
        print!("{}", table(R::HEADERS, rows));
        if show_keys {
            for r in all {
                print_keys(r.attestation());
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

/// What [`Output::created`] and [`Output::records`] need of an individual enrollment or an
/// enrollment group: its names in messages, its id, its keys and its table row.
pub trait Record: Serialize {
    /// The noun in messages: `created enrollment …`.
    const KIND: &'static str;
    /// The plural: `no enrollments`.
    const PLURAL: &'static str;
    /// The table's column headers, one per cell of [`row`](Self::row).
    const HEADERS: &'static [&'static str];

    /// The record's id (registration ID or group ID).
    fn id(&self) -> String;
    /// The attestation, with the keys when the service returned them.
    fn attestation(&self) -> &AttestationMechanism;
    /// The cells of the record's table row.
    fn row(&self) -> Vec<String>;
}

impl Record for IndividualEnrollment {
    const KIND: &'static str = "enrollment";
    const PLURAL: &'static str = "enrollments";
    const HEADERS: &'static [&'static str] = &[
        "REGISTRATION ID",
        "STATUS",
        "ATTESTATION",
        "DEVICE ID",
        "HUBS",
        "REGISTRATION",
    ];

    fn id(&self) -> String {
        self.registration_id.to_string()
    }

    fn attestation(&self) -> &AttestationMechanism {
        &self.attestation
    }

    fn row(&self) -> Vec<String> {
        let reg = self.registration_state.as_ref();
        vec![
            self.id(),
            status(self.provisioning_status).into(),
            attestation_kind(&self.attestation).into(),
            self.effective_device_id(),
            hubs(&self.iot_hubs, self.iot_hub_host_name.as_deref()),
            reg.map_or_else(|| "-".into(), registration_summary),
        ]
    }
}

impl Record for EnrollmentGroup {
    const KIND: &'static str = "enrollment group";
    const PLURAL: &'static str = "enrollment groups";
    const HEADERS: &'static [&'static str] =
        &["GROUP ID", "STATUS", "ATTESTATION", "HUBS", "ALLOCATION"];

    fn id(&self) -> String {
        self.enrollment_group_id.to_string()
    }

    fn attestation(&self) -> &AttestationMechanism {
        &self.attestation
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id(),
            status(self.provisioning_status).into(),
            attestation_kind(&self.attestation).into(),
            hubs(&self.iot_hubs, self.iot_hub_host_name.as_deref()),
            self.allocation_policy
                .and_then(|p| serde_json::to_value(p).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "default".into()),
        ]
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

fn attestation_kind(a: &AttestationMechanism) -> &'static str {
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
