//! Prometheus metrics, one registry per controller.
//!
//! Counters and histograms are updated where things happen (client, poller, node
//! actors); gauges of machines per state are computed from the status board at scrape
//! time so they can never drift from what the API shows.
//!
//! Conventions, so that `promtool check metrics` passes and queries stay simple: the
//! unit is in the name (`_seconds`, `_bytes`), counters end in `_total`, the MAAS status
//! is always the label `status` with MAAS's API enum name (`failed_commissioning`), and
//! an HTTP code is always its own label `code` (`0` = no answer).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::maas::NodeStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
    /// `ok`, `error` or `preview`.
    pub result: String,
    /// The HTTP code of a refused operation (`0` = no answer); empty otherwise.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub op: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// A MAAS status, as MAAS's API enum name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

/// The metric label for a MAAS status: its API enum name (`failed_commissioning`), or
/// `unknown_<n>` for a number this build does not know.
pub fn status_label(status: NodeStatus) -> String {
    match status.api_name() {
        Some(n) => n.to_string(),
        None => format!("unknown_{}", status.code()),
    }
}

/// Request latencies: 5 ms to ~2.7 min.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

/// Time in a MAAS status: commissioning and deployment take 5-30 minutes on real
/// hardware, a stuck machine hours. 1 s to ~9 h (1, 2, 4, ... 32768 s).
pub fn state_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    pub actions: Family<ActionLabels, Counter>,
    pub maas_requests: Family<RequestLabels, Counter>,
    pub maas_latency: Family<KindLabels, Histogram, fn() -> Histogram>,
    pub bytes_fetched: Family<KindLabels, Counter>,
    pub poll_seconds: Histogram,
    pub polls: Family<KindLabels, Counter>,
    pub last_poll_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub skipped_machines: Counter,
    pub provision_seconds: Histogram,
    pub provision_runs: Family<KindLabels, Counter>,
    pub retries: Family<KindLabels, Counter>,
    pub state_seconds: Family<StatusLabels, Histogram, fn() -> Histogram>,
    pub events_seen: Counter,
    pub deltas: Counter,
    pub fallbacks: Family<KindLabels, Counter>,
    /// Leader election (`maas_flow_leader`, leadership changes, lease renewal failures).
    pub ha: crate::ha::campaign::HaMetrics,
    /// Operations MAAS's validation refused, by action and refused field.
    pub refusals: Family<RefusalLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub action: String,
    pub field: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            actions: Family::default(),
            maas_requests: Family::default(),
            maas_latency: Family::new_with_constructor(seconds_histogram),
            bytes_fetched: Family::default(),
            poll_seconds: seconds_histogram(),
            polls: Family::default(),
            last_poll_success: Gauge::default(),
            skipped_machines: Counter::default(),
            provision_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 18)),
            provision_runs: Family::default(),
            retries: Family::default(),
            state_seconds: Family::new_with_constructor(state_seconds_histogram),
            events_seen: Counter::default(),
            deltas: Counter::default(),
            fallbacks: Family::default(),
            ha: Default::default(),
            refusals: Family::default(),
            registry: Registry::with_prefix("maas_flow"),
        };
        // Families share their state with their clones, so the registry can hold clones.
        let registry = &mut m.registry;
        registry.register(
            "actions",
            "MAAS operations taken, by action and result",
            m.actions.clone(),
        );
        registry.register(
            "maas_requests",
            "MAAS API requests by op and HTTP code (0 = no answer).",
            m.maas_requests.clone(),
        );
        registry.register(
            "maas_request_seconds",
            "MAAS request latency by kind (list, read, op)",
            m.maas_latency.clone(),
        );
        registry.register_with_unit(
            "maas_response",
            "Response bytes read from MAAS by kind (list, read, op).",
            Unit::Bytes,
            m.bytes_fetched.clone(),
        );
        registry.register(
            "poll_seconds",
            "Duration of a full machine list, fetch and parse",
            m.poll_seconds.clone(),
        );
        registry.register("polls", "Machine list polls by result", m.polls.clone());
        registry.register(
            "last_poll_success_timestamp_seconds",
            "Unix time of the last successful list",
            m.last_poll_success.clone(),
        );
        registry.register(
            "skipped_machines",
            "Machine entries skipped because MAAS sent malformed JSON",
            m.skipped_machines.clone(),
        );
        registry.register(
            "provision_seconds",
            "Duration of post-deploy provisioning runs",
            m.provision_seconds.clone(),
        );
        registry.register(
            "provision_runs",
            "Provisioning runs by result",
            m.provision_runs.clone(),
        );
        registry.register(
            "retries",
            "Retries scheduled after a failure, by kind",
            m.retries.clone(),
        );
        registry.register(
            "state_seconds",
            "Time machines spent in each MAAS status, observed when they leave it.",
            m.state_seconds.clone(),
        );
        registry.register(
            "events_seen",
            "MAAS events read from the event log",
            m.events_seen.clone(),
        );
        registry.register(
            "deltas",
            "Delta updates applied from the event log",
            m.deltas.clone(),
        );
        registry.register(
            "fallbacks",
            "Fallbacks from the event feed to a full list, by reason",
            m.fallbacks.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader and acts, 0 on a standby",
            m.ha.leader.clone(),
        );
        registry.register(
            "leadership_changes",
            "Times this replica became or stopped being the leader",
            m.ha.leadership_changes.clone(),
        );
        registry.register(
            "lease_renewal_failures",
            "Election lease renewals that failed or timed out",
            m.ha.lease_renewal_failures.clone(),
        );
        registry.register(
            "refusals",
            "Operations MAAS refused for a field of the request (held, not retried), by action and field",
            m.refusals.clone(),
        );
        m
    }

    /// An operation that succeeded (`ok`) or was only logged (`preview`).
    pub fn action(&self, action: &str, result: &str) {
        self.actions
            .get_or_create(&ActionLabels {
                action: action.into(),
                result: result.into(),
                code: String::new(),
            })
            .inc();
    }

    pub fn refusal(&self, action: &str, field: &str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                action: action.into(),
                field: field.into(),
            })
            .inc();
    }

    /// An operation MAAS refused with `code` (`0` = no answer).
    pub fn action_error(&self, action: &str, code: u16) {
        self.actions
            .get_or_create(&ActionLabels {
                action: action.into(),
                result: "error".into(),
                code: code.to_string(),
            })
            .inc();
    }

    /// Time a machine spent in `status` before leaving it.
    pub fn left_status(&self, status: NodeStatus, seconds: f64) {
        self.state_seconds
            .get_or_create(&StatusLabels {
                status: status_label(status),
            })
            .observe(seconds);
    }

    pub fn request(&self, op: &str, code: u16) {
        self.maas_requests
            .get_or_create(&RequestLabels {
                op: op.into(),
                code: code.to_string(),
            })
            .inc();
    }

    pub fn kind(family: &Family<KindLabels, Counter>, kind: &str) -> u64 {
        family
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc()
    }

    /// Render the registry, the caller's extra OpenMetrics families, `build_info` and
    /// the `process_*` metrics, in OpenMetrics text format.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        let mut extra = extra.to_string();
        extra.push_str(&format!(
            "# HELP maas_flow_build Version of this maas-flow build.\n# TYPE maas_flow_build info\nmaas_flow_build_info{{version=\"{}\",rustc_min=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_RUST_VERSION"),
        ));
        crate::process_metrics::render(&mut extra);
        let extra = extra.as_str();
        // Keep `# EOF` last, as the text format requires.
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            let mut s = stripped.to_string();
            s.push_str(extra);
            s.push_str("# EOF\n");
            s
        } else {
            out + extra
        }
    }
}

/// The Prometheus text format 0.0.4 of an OpenMetrics exposition, for scrapers and
/// tools (`promtool check metrics`, curl) that do not ask for OpenMetrics.
///
/// The differences that matter: a counter family is named with its `_total` suffix and
/// an info family with `_info` (a gauge), and there are no `# UNIT` or `# EOF` lines.
pub fn to_text_format(openmetrics: &str) -> String {
    let mut renamed: std::collections::HashMap<&str, (&str, &str)> = Default::default();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            match rest.split_once(' ') {
                Some((name, "counter")) => {
                    renamed.insert(name, ("_total", "counter"));
                }
                Some((name, "info")) => {
                    renamed.insert(name, ("_info", "gauge"));
                }
                _ => {}
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some((suffix, kind)) = renamed.get(name) {
                let tail = if prefix == "# TYPE " { *kind } else { tail };
                if !name.ends_with(suffix) {
                    out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_names_counters_with_total_and_drops_openmetrics_lines() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{code=\"200\"} 1\n# HELP a_build Build.\n# TYPE a_build info\na_build_info{version=\"1\"} 1\n# HELP a_seconds S.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\na_seconds_count 0\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{code=\"200\"} 1\n# HELP a_build_info Build.\n# TYPE a_build_info gauge\na_build_info{version=\"1\"} 1\n# HELP a_seconds S.\n# TYPE a_seconds histogram\na_seconds_count 0\n"
        );
    }

    #[test]
    fn status_labels_are_api_names() {
        assert_eq!(
            status_label(NodeStatus::FailedCommissioning),
            "failed_commissioning"
        );
        assert_eq!(status_label(NodeStatus::Unknown(42)), "unknown_42");
    }

    #[test]
    fn state_seconds_cover_seconds_to_hours() {
        let h = state_seconds_histogram();
        h.observe(1800.0);
        let mut reg = Registry::default();
        reg.register("s", "", h);
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &reg).unwrap();
        assert!(t.contains("le=\"1.0\""), "{t}");
        assert!(t.contains("le=\"32768.0\""), "{t}");
        assert!(t.contains("s_bucket{le=\"2048.0\"} 1"), "{t}");
    }
}
