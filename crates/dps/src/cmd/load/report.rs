//! What a load run measured ([`Stats`]: counts, HDR latency histograms, errors by kind) and
//! how it is shown: text for people, JSON (`--json`) for scripts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dps_client::{FlowError, Timings};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Latencies in microseconds, 1 µs to 1 h, 3 significant figures.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

/// The percentiles reported, in order: p50, p90, p99, p99.9 and the maximum.
const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

impl Latencies {
    fn new() -> Self {
        Self(
            Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
        )
    }

    fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(us);
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// p50, p90, p99, p99.9 and max, in microseconds.
    pub fn percentiles(&self) -> [u64; 5] {
        let q = |i: usize| self.0.value_at_quantile(QUANTILES[i].1);
        [q(0), q(1), q(2), q(3), self.0.max()]
    }

    fn json(&self) -> Value {
        let p = self.percentiles();
        json!({"samples": self.len(), "p50": p[0], "p90": p[1], "p99": p[2], "p99_9": p[3], "max": p[4], "mean": self.0.mean().round()})
    }

    fn text(&self) -> String {
        let p = self.percentiles();
        let names = QUANTILES.iter().map(|(n, _)| *n).chain(["max"]);
        names
            .zip(p)
            .map(|(n, v)| format!("{n} {}", millis(v)))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

/// Microseconds as milliseconds, e.g. `1.234 ms`.
fn millis(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// How often one kind of error happened, and one full message of it.
#[derive(Debug, Clone)]
pub struct ErrorCount {
    /// Occurrences.
    pub count: u64,
    /// The first occurrence's message.
    pub example: String,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Registrations that ended `assigned`.
    pub ok: u64,
    /// Registrations that failed.
    pub failed: u64,
    /// Starts more than 1 ms after they were due (open loop).
    pub late: u64,
    /// From the first start to the last end.
    pub elapsed: Duration,
    /// When the worker that produced these stats finished.
    pub(super) finished: Option<Instant>,
    /// Start to register answer.
    pub register: Latencies,
    /// Start to `assigned`.
    pub total: Latencies,
    /// Failures by kind.
    pub errors: BTreeMap<String, ErrorCount>,
}

impl Stats {
    /// Empty stats.
    pub fn new() -> Self {
        Self {
            ok: 0,
            failed: 0,
            late: 0,
            elapsed: Duration::ZERO,
            finished: None,
            register: Latencies::new(),
            total: Latencies::new(),
            errors: BTreeMap::new(),
        }
    }

    /// Counts one assignment.
    pub fn record(&mut self, t: Timings) {
        self.ok += 1;
        self.register.record(t.register);
        self.total.record(t.total);
    }

    /// Counts one failure of `kind`; `message` is kept for the first of each kind.
    pub fn fail(&mut self, kind: String, message: impl FnOnce() -> String) {
        self.failed += 1;
        self.errors
            .entry(kind)
            .or_insert_with(|| ErrorCount {
                count: 0,
                example: message(),
            })
            .count += 1;
    }

    /// Adds another worker's stats.
    pub fn merge(&mut self, other: Self) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.late += other.late;
        self.finished = self.finished.max(other.finished);
        // Same bounds on both sides: adding cannot fail.
        let _ = self.register.0.add(&other.register.0);
        let _ = self.total.0.add(&other.total.0);
        for (kind, e) in other.errors {
            self.errors
                .entry(kind)
                .and_modify(|mine| mine.count += e.count)
                .or_insert(e);
        }
    }

    /// Assignments per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// The stats as JSON.
    pub fn json(&self) -> Value {
        let errors: serde_json::Map<String, Value> = self
            .errors
            .iter()
            .map(|(k, e)| (k.clone(), json!({"count": e.count, "example": e.example})))
            .collect();
        json!({
            "ok": self.ok,
            "failed": self.failed,
            "late_starts": self.late,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "per_second": self.rate().round(),
            "register_us": self.register.json(),
            "provisioning_us": self.total.json(),
            "errors": errors,
        })
    }

    /// The stats as text lines, indented by two spaces.
    pub fn text(&self) -> String {
        let mut s = format!(
            "  {} ok, {} failed in {:.2} s: {:.0}/s{}\n",
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.rate(),
            match self.late {
                0 => String::new(),
                n => format!(" ({n} started late)"),
            }
        );
        s += &format!("  register      {}\n", self.register.text());
        s += &format!("  provisioning  {}\n", self.total.text());
        for (kind, e) in &self.errors {
            s += &format!("  error {kind}: {} (first: {})\n", e.count, e.example);
        }
        s
    }
}

/// A short, stable name for what went wrong, for counting errors by kind.
pub fn error_kind(e: &dps_client::Error) -> String {
    use dps_client::Error as E;
    match e {
        E::Connect { .. } => "connect".into(),
        E::UntrustedServer { .. } => "untrusted server".into(),
        E::Transport { .. } => "transport".into(),
        E::Service { status, .. } => format!("service {status}"),
        E::Protocol { .. } => "protocol".into(),
        E::Registration(f) => match f {
            FlowError::Rejected {
                status, error_code, ..
            } => match error_code {
                Some(c) => format!("rejected {status} ({c})"),
                None => format!("rejected {status}"),
            },
            FlowError::Failed { error_code, .. } => match error_code {
                Some(c) => format!("failed ({c})"),
                None => "failed".into(),
            },
            FlowError::Disabled => "disabled".into(),
            FlowError::RetriesExhausted { last_status, .. } => match last_status {
                Some(s) => format!("retries exhausted ({s})"),
                None => "retries exhausted".into(),
            },
            FlowError::TooManyPolls { .. } => "too many polls".into(),
            FlowError::Protocol(_) => "protocol".into(),
            _ => "registration".into(),
        },
        _ => "other".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn timings(register_ms: u64, total_ms: u64) -> Timings {
        Timings {
            register: Duration::from_millis(register_ms),
            total: Duration::from_millis(total_ms),
        }
    }

    #[test]
    fn merged_stats_keep_every_sample_and_error() {
        let mut a = Stats::new();
        for ms in 1..=100 {
            a.record(timings(ms, 2 * ms));
        }
        let mut b = Stats::new();
        b.record(timings(1000, 2000));
        b.fail("timeout".into(), || "first".into());
        b.fail("timeout".into(), || "second".into());
        a.fail("timeout".into(), || "earlier".into());
        a.merge(b);
        assert_eq!((a.ok, a.failed), (101, 3));
        assert_eq!(a.errors["timeout"].count, 3);
        assert_eq!(a.errors["timeout"].example, "earlier");
        let p = a.total.percentiles();
        assert!((101_500..=102_500).contains(&p[0]), "p50 {}", p[0]);
        assert!((1_999_000..=2_001_000).contains(&p[4]), "max {}", p[4]);
        assert_eq!(a.register.len(), 101);
        a.elapsed = Duration::from_secs(2);
        assert!((a.rate() - 50.5).abs() < 1e-9);
        let j = a.json();
        assert_eq!(j["ok"], 101);
        assert_eq!(j["errors"]["timeout"]["count"], 3);
        assert!(a.text().contains("error timeout: 3 (first: earlier)"));
    }

    #[test]
    fn error_kinds_name_status_and_code() {
        let rejected = dps_client::Error::Registration(FlowError::Rejected {
            status: 401,
            error_code: Some(401002),
            message: "unauthorized".into(),
            tracking_id: None,
        });
        assert_eq!(error_kind(&rejected), "rejected 401 (401002)");
        let gave_up = dps_client::Error::Registration(FlowError::RetriesExhausted {
            attempts: 6,
            last_status: Some(503),
        });
        assert_eq!(error_kind(&gave_up), "retries exhausted (503)");
        assert_eq!(error_kind(&dps_client::Error::InvalidKey), "other");
    }
}
