//! Prometheus metrics of the running proxy (issue 9): counters and timings kept
//! in one process-wide registry, recorded where things happen (the reply a
//! client got, a KAS transfer, a Konnektor call, a cache lookup) and served as
//! text on the admin port's `/metrics`. Gauges that describe the present
//! (upstream health, sidecar cursors) are computed when scraped.
//!
//! Labels carry account addresses, operation names and reply codes, never
//! content, subjects or secrets. Their number is bounded by the configured
//! accounts and the fixed sets of operations and codes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// What each metric is, for `# HELP` and `# TYPE`.
pub const DESCRIPTIONS: &[(&str, &str, &str)] = &[
    (
        "kimcm_mails_sent_total",
        "counter",
        "Mails the Fachdienst accepted (250), per account.",
    ),
    (
        "kimcm_mail_bytes_sent_total",
        "counter",
        "Bytes of accepted mails as the client sent them, per account.",
    ),
    (
        "kimcm_mails_refused_total",
        "counter",
        "Mails refused to the client, per account and reply code.",
    ),
    (
        "kimcm_mails_opened_total",
        "counter",
        "KIM mails opened on RETR, per account and result (ok, problem).",
    ),
    (
        "kimcm_mails_fetched_total",
        "counter",
        "Mails handed to the client on RETR (opened or passed through), per account.",
    ),
    (
        "kimcm_mail_bytes_fetched_total",
        "counter",
        "Bytes handed to the client on RETR, per account.",
    ),
    (
        "kimcm_kas_uploads_total",
        "counter",
        "Uploads to the KIM Attachment Service, per result.",
    ),
    (
        "kimcm_kas_upload_bytes_total",
        "counter",
        "Bytes uploaded to the KAS (encrypted).",
    ),
    (
        "kimcm_kas_downloads_total",
        "counter",
        "Downloads from the KAS, per result.",
    ),
    (
        "kimcm_konnektor_calls_total",
        "counter",
        "Konnektor SOAP calls, per operation and result.",
    ),
    (
        "kimcm_konnektor_call_seconds",
        "summary",
        "Time of Konnektor SOAP calls, per operation.",
    ),
    (
        "kimcm_cache_lookups_total",
        "counter",
        "Lookups in the limits and certificate caches, per cache and result (hit, miss, stale).",
    ),
    (
        "kimcm_upstream_up",
        "gauge",
        "Whether an upstream answered its last probe (1) or not (0).",
    ),
    (
        "kimcm_sidecar_last_success_timestamp_seconds",
        "gauge",
        "When a sidecar last finished successfully (its cursor), Unix seconds.",
    ),
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Registry {
    values: Mutex<BTreeMap<(&'static str, Labels), f64>>,
}

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> (&'static str, Labels) {
    (
        name,
        labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
    )
}

/// Adds `v` to the counter `name` with `labels`.
pub fn add(name: &'static str, labels: &[(&'static str, &str)], v: f64) {
    let mut values = registry().values.lock().unwrap_or_else(|p| p.into_inner());
    *values.entry(key(name, labels)).or_insert(0.0) += v;
}

/// Counts one.
pub fn inc(name: &'static str, labels: &[(&'static str, &str)]) {
    add(name, labels, 1.0);
}

/// Records one timing of the summary `name` (its `_sum` and `_count`).
pub fn observe(name: &'static str, labels: &[(&'static str, &str)], d: Duration) {
    let mut values = registry().values.lock().unwrap_or_else(|p| p.into_inner());
    let (n, l) = key(name, labels);
    *values.entry((n, with_suffix(&l, "sum"))).or_insert(0.0) += d.as_secs_f64();
    *values.entry((n, with_suffix(&l, "count"))).or_insert(0.0) += 1.0;
}

/// A summary's part is kept under a pseudo label, written as a name suffix.
fn with_suffix(l: &Labels, suffix: &str) -> Labels {
    let mut l = l.clone();
    l.insert(0, ("__suffix", suffix.to_string()));
    l
}

/// The value of a counter now (tests, the admin page).
pub fn value(name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
    registry()
        .values
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key(name, labels))
        .copied()
        .unwrap_or(0.0)
}

/// A label value with `\`, `"` and line feeds escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A gauge computed at scrape time.
pub struct Gauge {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The text exposition format (version 0.0.4) of every metric and `gauges`.
pub fn render(gauges: &[Gauge]) -> String {
    let values = registry()
        .values
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut out = String::new();
    for (name, kind, help) in DESCRIPTIONS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        let rows = values
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, l), v)| (l.clone(), *v))
            .chain(
                gauges
                    .iter()
                    .filter(|g| g.name == *name)
                    .map(|g| (g.labels.clone(), g.value)),
            );
        for (labels, v) in rows {
            let suffix = labels
                .iter()
                .find(|(k, _)| *k == "__suffix")
                .map(|(_, s)| format!("_{s}"))
                .unwrap_or_default();
            let text: Vec<String> = labels
                .iter()
                .filter(|(k, _)| *k != "__suffix")
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let labels = if text.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", text.join(","))
            };
            let _ = writeln!(out, "{name}{suffix}{labels} {v}");
        }
    }
    out
}

/// The reply code and, when the text starts with one, the enhanced status
/// code: `451 4.7.5`.
pub fn reply_reason(code: u16, text: &str) -> String {
    let enhanced = text
        .split_whitespace()
        .next()
        .filter(|t| t.split('.').count() == 3 && t.split('.').all(|p| p.parse::<u16>().is_ok()));
    match enhanced {
        Some(e) => format!("{code} {e}"),
        None => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_summaries_and_gauges_in_the_text_format() {
        inc(
            "kimcm_mails_refused_total",
            &[("account", "t@x.de"), ("reason", "451 4.7.5")],
        );
        inc(
            "kimcm_mails_refused_total",
            &[("account", "t@x.de"), ("reason", "451 4.7.5")],
        );
        observe(
            "kimcm_konnektor_call_seconds",
            &[("operation", "test.op")],
            Duration::from_millis(250),
        );
        let text = render(&[Gauge {
            name: "kimcm_upstream_up",
            labels: vec![("service", "Fach\"dienst".into())],
            value: 1.0,
        }]);
        assert!(
            text.contains("# TYPE kimcm_mails_refused_total counter"),
            "{text}"
        );
        assert!(
            text.contains("kimcm_mails_refused_total{account=\"t@x.de\",reason=\"451 4.7.5\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kimcm_konnektor_call_seconds_sum{operation=\"test.op\"} 0.25"),
            "{text}"
        );
        assert!(
            text.contains("kimcm_konnektor_call_seconds_count{operation=\"test.op\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kimcm_upstream_up{service=\"Fach\\\"dienst\"} 1"),
            "{text}"
        );
        assert_eq!(reply_reason(451, "4.7.5 No recipient"), "451 4.7.5");
        assert_eq!(reply_reason(554, "Transaction failed"), "554");
    }
}
