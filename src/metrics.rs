//! Prometheus metrics, one registry per controller.
//!
//! Counters and histograms are updated where things happen (client, poller, node
//! actors); gauges of machines per state are computed from the status board at scrape
//! time so they can never drift from what the API shows.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
    pub result: String,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
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
    pub state_seconds: Family<StateLabels, Histogram, fn() -> Histogram>,
    pub events_seen: Counter,
    pub deltas: Counter,
    pub fallbacks: Family<KindLabels, Counter>,
    /// Leader election (`maas_flow_leader`, leadership changes, lease renewal failures).
    pub ha: crate::ha::campaign::HaMetrics,
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
            state_seconds: Family::new_with_constructor(seconds_histogram),
            events_seen: Counter::default(),
            deltas: Counter::default(),
            fallbacks: Family::default(),
            ha: Default::default(),
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
            "MAAS API requests by op and HTTP code (0 = no answer)",
            m.maas_requests.clone(),
        );
        registry.register(
            "maas_request_seconds",
            "MAAS request latency by kind (list, read, op)",
            m.maas_latency.clone(),
        );
        registry.register(
            "maas_bytes_fetched",
            "Response bytes read from MAAS by kind",
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
            "Time machines spent in each lifecycle state",
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
        m
    }

    pub fn action(&self, action: &str, result: &str) {
        self.actions
            .get_or_create(&ActionLabels {
                action: action.into(),
                result: result.into(),
            })
            .inc();
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

    /// Render the registry plus the caller's extra gauge lines in Prometheus text format.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
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
