//! `GET /metrics`: what the daemon has decided and done since it started, in the OpenMetrics
//! text format that Prometheus scrapes.
//!
//! Counts only: no label carries a user id, a token or a URL, and every label takes one of a
//! fixed set of values (reason codes, outcomes, status codes), so the output stays small. The
//! registry lives in the daemon's shared state and survives reloads; the fetcher of a reloaded
//! policy reports into the same counters.

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram, info::Info},
    registry::{Registry, Unit},
};

use crate::RejectReason;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the verify latency buckets, in seconds: from a verification with a cached
/// key (tens of microseconds) to a login that waits for a key fetch (up to the fetch timeout).
const LATENCY_BUCKETS: [f64; 18] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Status codes of requests refused before a decision.
const REFUSALS: [u16; 4] = [400, 401, 408, 413];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    result: &'static str,
    /// The reject reason code; empty for an accepted login.
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

/// The daemon's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    duration: Histogram,
    key_fetches: Family<OutcomeLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    http_errors: Family<StatusLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, and every label value it can take present at zero, so that a
    /// rate over a counter that has not moved yet is 0 rather than absent.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("synapse_token_auth");
        let decisions = Family::<DecisionLabels, Counter>::default();
        drop(decisions.get_or_create(&DecisionLabels {
            result: "accepted",
            reason: "",
        }));
        for reason in RejectReason::ALL {
            drop(decisions.get_or_create(&DecisionLabels {
                result: "rejected",
                reason: reason.as_str(),
            }));
        }
        registry.register(
            "decisions",
            "Login decisions of POST /v1/verify, by result and reject reason code",
            decisions.clone(),
        );
        let duration = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "request_duration",
            "Time from receiving a POST /v1/verify request to its decision, key fetches included",
            Unit::Seconds,
            duration.clone(),
        );
        let key_fetches = Family::<OutcomeLabels, Counter>::default();
        for outcome in ["ok", "failed"] {
            drop(key_fetches.get_or_create(&OutcomeLabels { outcome }));
        }
        registry.register(
            "key_fetches",
            "Fetches of published keys (discovery document or key set), by outcome",
            key_fetches.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        for result in ["ok", "failed"] {
            drop(reloads.get_or_create(&ResultLabels { result }));
        }
        registry.register(
            "reloads",
            "Configuration reloads on SIGHUP, by result",
            reloads.clone(),
        );
        let http_errors = Family::<StatusLabels, Counter>::default();
        for status in REFUSALS {
            drop(http_errors.get_or_create(&StatusLabels { status }));
        }
        registry.register(
            "http_errors",
            "Requests refused before a decision (malformed, no client token, too slow, too large), by status code",
            http_errors.clone(),
        );
        registry.register(
            "build",
            "The running version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            decisions,
            duration,
            key_fetches,
            reloads,
            http_errors,
        }
    }

    /// A decision of `POST /v1/verify` that took `elapsed`: `None` for an accepted login.
    pub fn decided(&self, rejected: Option<RejectReason>, elapsed: Duration) {
        let labels = match rejected {
            None => DecisionLabels {
                result: "accepted",
                reason: "",
            },
            Some(reason) => DecisionLabels {
                result: "rejected",
                reason: reason.as_str(),
            },
        };
        self.decisions.get_or_create(&labels).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// A request refused with `status` before any decision.
    pub fn refused(&self, status: u16) {
        self.http_errors
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    /// A fetch of published keys has been reported to the core.
    pub fn key_fetched(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.key_fetches
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A SIGHUP reload has ended.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The OpenMetrics text of every metric, ending in `# EOF`.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_every_series_from_zero_and_count_what_happens() {
        let metrics = Metrics::new();
        let empty = metrics.render();
        assert!(
            empty.contains("synapse_token_auth_decisions_total{result=\"accepted\",reason=\"\"} 0"),
            "{empty}"
        );
        for reason in RejectReason::ALL {
            let line = format!(
                "synapse_token_auth_decisions_total{{result=\"rejected\",reason=\"{}\"}} 0",
                reason.as_str()
            );
            assert!(empty.contains(&line), "{line} missing:\n{empty}");
        }
        metrics.decided(None, Duration::from_micros(30));
        metrics.decided(Some(RejectReason::Expired), Duration::from_secs(3));
        metrics.refused(413);
        metrics.key_fetched(false);
        metrics.reloaded(true);
        let text = metrics.render();
        for line in [
            "synapse_token_auth_decisions_total{result=\"accepted\",reason=\"\"} 1",
            "synapse_token_auth_decisions_total{result=\"rejected\",reason=\"expired\"} 1",
            "synapse_token_auth_request_duration_seconds_count 2",
            "synapse_token_auth_request_duration_seconds_bucket{le=\"0.00005\"} 1",
            "synapse_token_auth_request_duration_seconds_bucket{le=\"5.0\"} 2",
            "synapse_token_auth_http_errors_total{status=\"413\"} 1",
            "synapse_token_auth_key_fetches_total{outcome=\"failed\"} 1",
            "synapse_token_auth_reloads_total{result=\"ok\"} 1",
            "synapse_token_auth_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
