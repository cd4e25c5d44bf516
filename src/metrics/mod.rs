//! Prometheus metrics of the daemon, and the small HTTP server (`metrics.listen`) that serves
//! them with `/healthz` and `/readyz`.
//!
//! Invariants:
//! - Label values come from small fixed sets (channel, outcome, state, operation) or from
//!   [`types::TypeLabels`], which caps the user-defined notification type at
//!   [`types::MAX_TYPES`] distinct values per process (later types are counted as `other`).
//!   No id, user id, tenant or destination is ever a label.
//! - Recording is a few atomic operations: the hooks sit in the delivery path and cost nothing
//!   worth measuring whether or not anything is served.
//! - The notifications-by-state gauges are counted with one GROUP BY, at most once per
//!   `metrics.state_refresh`, on scrape (see [`gauges`]): never per scrape under load, and not
//!   at all when nobody scrapes.
//!
//! Why one process-wide registry: the hooks live in code other modules own (the worker, the
//! recorder, the sweeper); a handle threaded through every one of them would widen each
//! signature for what is, like the process itself, one set of counters.
//!
//! Layout: this file (the metrics and the one-line hooks) · [`types`] (the bounded type
//! label) · [`gauges`] (state counts, cached) · [`server`] (HTTP: `/metrics`, `/healthz`,
//! `/readyz`).

pub mod gauges;
pub mod server;
pub mod types;

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::delivery::Delivery;
use crate::state::{AttemptKind, Channel, State};
use crate::store::health::StateGauges;

/// `reason` of `herald_held_back`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeldLabels {
    reason: &'static str,
}

/// `to` of `herald_breaker_transitions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    to: &'static str,
}

/// Where a database error happened, for `herald_database_errors_total{operation}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOperation {
    Claim,
    Record,
    Rescue,
    Heartbeat,
    Listen,
    Sweep,
    Release,
    StateGauges,
}

impl DbOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            DbOperation::Claim => "claim",
            DbOperation::Record => "record",
            DbOperation::Rescue => "rescue",
            DbOperation::Heartbeat => "heartbeat",
            DbOperation::Listen => "listen",
            DbOperation::Sweep => "sweep",
            DbOperation::Release => "release",
            DbOperation::StateGauges => "state_gauges",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    channel: &'static str,
    r#type: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
    channel: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric herald exports.
struct Metrics {
    registry: Registry,
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Histograms<DurationLabels>,
    delivery_lag: Histograms<ChannelLabels>,
    notifications: Family<StateLabels, Gauge>,
    oldest_due_age: Gauge<f64, AtomicU64>,
    open_breakers: Gauge,
    held_back: Family<HeldLabels, Gauge>,
    leases_rescued: Counter,
    breaker_transitions: Family<BreakerLabels, Counter>,
    swept: Counter,
    database_errors: Family<OperationLabels, Counter>,
    types: types::TypeLabels,
}

/// One HTTP request or SMTP conversation: 5 ms to 60 s.
fn attempt_duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// Enqueue to delivered: milliseconds when idle, hours when retries were needed.
fn delivery_lag_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0,
    ])
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "herald_delivery_attempts",
            "Delivery attempts that ended, by channel, notification type and outcome (delivered, failed, unknown)",
            attempts.clone(),
        );
        let attempt_duration: Histograms<DurationLabels> =
            Family::new_with_constructor(attempt_duration_histogram);
        registry.register(
            "herald_delivery_attempt_duration_seconds",
            "Time one delivery attempt took (the HTTP request or the SMTP conversation)",
            attempt_duration.clone(),
        );
        let delivery_lag: Histograms<ChannelLabels> =
            Family::new_with_constructor(delivery_lag_histogram);
        registry.register(
            "herald_delivery_lag_seconds",
            "From enqueue (created_at) to the delivered attempt's end, retries included",
            delivery_lag.clone(),
        );
        let notifications = Family::<StateLabels, Gauge>::default();
        registry.register(
            "herald_notifications",
            "Notifications in the table by state and channel (counted at most once per metrics.state_refresh)",
            notifications.clone(),
        );
        let oldest_due_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "herald_oldest_due_age_seconds",
            "How long the oldest due pending notification has waited since its run_at (0 when none is due)",
            oldest_due_age.clone(),
        );
        let open_breakers = Gauge::default();
        registry.register(
            "herald_open_breakers",
            "Destinations (webhook endpoints, the SMTP relay) whose circuit breaker is open or half-open (counted with the state gauges)",
            open_breakers.clone(),
        );
        let held_back = Family::<HeldLabels, Gauge>::default();
        registry.register(
            "herald_held_back",
            "Due notifications not sent because their destination holds them: an open breaker, a 429's throttle, or a limit (max_in_flight, rate); counted with the state gauges",
            held_back.clone(),
        );
        let breaker_transitions = Family::<BreakerLabels, Counter>::default();
        registry.register(
            "herald_breaker_transitions",
            "Circuit breaker transitions seen by this daemon, by the state entered",
            breaker_transitions.clone(),
        );
        let leases_rescued = Counter::default();
        registry.register(
            "herald_leases_rescued",
            "Running notifications whose lease expired (their daemon stopped or lost the database) returned by this daemon",
            leases_rescued.clone(),
        );
        let swept = Counter::default();
        registry.register(
            "herald_sweeper_deleted",
            "Finished notifications deleted by this process's sweeper after their retention window",
            swept.clone(),
        );
        let database_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "herald_database_errors",
            "Database errors met by the daemon, by operation",
            database_errors.clone(),
        );
        registry.register(
            "herald_build",
            "The running herald's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Metrics {
            registry,
            attempts,
            attempt_duration,
            delivery_lag,
            notifications,
            oldest_due_age,
            open_breakers,
            held_back,
            leases_rescued,
            breaker_transitions,
            swept,
            database_errors,
            types: types::TypeLabels::default(),
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// An attempt on `n` ended with `outcome` after `took`; a delivered one also records how long
/// after its enqueue it arrived (the database's `created_at` against this host's clock).
pub fn attempt_ended(n: &Delivery, outcome: AttemptKind, took: Duration) {
    let m = &*METRICS;
    let channel = n.channel().as_str();
    let outcome_label = outcome.as_str();
    m.attempts
        .get_or_create(&AttemptLabels {
            channel,
            r#type: m.types.label(&n.key.type_),
            outcome: outcome_label,
        })
        .inc();
    m.attempt_duration
        .get_or_create(&DurationLabels {
            channel,
            outcome: outcome_label,
        })
        .observe(took.as_secs_f64());
    if outcome == AttemptKind::Delivered {
        let lag = (chrono::Utc::now() - n.created_at)
            .to_std()
            .unwrap_or_default();
        m.delivery_lag
            .get_or_create(&ChannelLabels { channel })
            .observe(lag.as_secs_f64());
    }
}

/// Expired leases this daemon returned to pending (or dead).
/// A breaker moved to `to` (`closed`, `open` or `half_open`).
pub fn breaker_transition(to: &str) {
    let to = match to {
        "open" => "open",
        "half_open" => "half_open",
        _ => "closed",
    };
    METRICS
        .breaker_transitions
        .get_or_create(&BreakerLabels { to })
        .inc();
}

pub fn leases_rescued(count: u64) {
    METRICS.leases_rescued.inc_by(count);
}

/// Rows one sweeper batch deleted.
pub fn swept(count: u64) {
    METRICS.swept.inc_by(count);
}

/// A database error during `operation`.
pub fn database_error(operation: DbOperation) {
    METRICS
        .database_errors
        .get_or_create(&OperationLabels {
            operation: operation.as_str(),
        })
        .inc();
}

/// The exposition, in the OpenMetrics text format (which Prometheus reads).
pub fn encode() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry);
    text
}

/// Sets the state gauges; a (state, channel) pair absent from the counts becomes 0.
fn set_state_counts(values: &StateGauges) {
    let m = &*METRICS;
    let counts = &values.counts;
    for state in State::ALL {
        for channel in Channel::ALL {
            let count: i64 = counts
                .iter()
                .filter(|c| c.state == state && c.channel == channel)
                .map(|c| c.count)
                .sum();
            m.notifications
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                    channel: channel.as_str(),
                })
                .set(count);
        }
    }
    m.oldest_due_age
        .set(values.oldest_due_age.unwrap_or(0.0).max(0.0));
    m.open_breakers.set(values.open_breakers);
    for (reason, count) in [
        ("breaker", values.held_by_breaker),
        ("throttle", values.held_by_throttle),
        ("limit", values.held_by_limit),
    ] {
        m.held_back.get_or_create(&HeldLabels { reason }).set(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_shows_what_was_recorded() {
        database_error(DbOperation::Claim);
        swept(3);
        let pending_email = crate::store::admin::StateCount {
            state: State::Pending,
            channel: Channel::Email,
            count: 4,
        };
        set_state_counts(&StateGauges {
            counts: vec![pending_email],
            oldest_due_age: Some(2.5),
            open_breakers: 1,
            held_by_limit: 3,
            ..Default::default()
        });
        let text = encode();
        for line in [
            "# TYPE herald_sweeper_deleted counter",
            "# TYPE herald_build info",
            "herald_notifications{state=\"pending\",channel=\"email\"} 4",
            "herald_notifications{state=\"dead\",channel=\"webhook\"} 0",
            "herald_oldest_due_age_seconds 2.5",
            "herald_open_breakers 1",
            "herald_held_back{reason=\"limit\"} 3",
            "herald_held_back{reason=\"breaker\"} 0",
            "herald_database_errors_total{operation=\"claim\"}",
            "herald_build_info{version=\"",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.contains("herald_sweeper_deleted_total "), "{text}");
        // The delivery families appear with their first attempt (tests/it/ops_metrics.rs).
    }
}
