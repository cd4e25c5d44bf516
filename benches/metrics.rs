//! Cost of the metrics hook on the delivery path: `cargo bench --bench metrics`.
//!
//! - `hook`: `herald::metrics::attempt_ended` for a delivered webhook (a counter, the duration
//!   histogram, the lag histogram), cycling through 20 types; nanoseconds per call.
//!   Baseline in the same run: the attempt's own log line (`tracing::info!` with the same fields
//!   the worker logs), formatted as JSON into a sink: the per-attempt work herald already does.
//! - `scrape`: one `herald::metrics::encode()` of the resulting exposition.
//!
//! Environment: `N` calls (default 1,000,000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use herald::channel::AttemptKind;
use herald::delivery::Delivery;

fn per_call(total: Duration, n: usize) -> f64 {
    total.as_nanos() as f64 / n as f64
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let notifications: Vec<Delivery> = (0..20)
        .map(|i| Delivery::sample(&format!("type_{i}"), 1, 8))
        .collect();
    let took = Duration::from_millis(12);

    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::sink)
        .finish();
    let log = tracing::subscriber::with_default(subscriber, || {
        let started = Instant::now();
        for i in 0..n {
            let n = &notifications[i % notifications.len()];
            tracing::info!(
                id = %n.id,
                r#type = %n.key.type_,
                channel = %n.channel(),
                attempt = n.attempt,
                outcome = "delivered",
                status = 204,
                duration_ms = 12u64,
                next = "delivered",
                "attempt"
            );
        }
        started.elapsed()
    });

    let started = Instant::now();
    for i in 0..n {
        herald::metrics::attempt_ended(
            black_box(&notifications[i % notifications.len()]),
            AttemptKind::Delivered,
            took,
        );
    }
    let hook = started.elapsed();

    let started = Instant::now();
    let text = herald::metrics::encode();
    let scrape = started.elapsed();

    let (hook_ns, log_ns) = (per_call(hook, n), per_call(log, n));
    println!(
        "phase    herald                          baseline (same run)                      ratio"
    );
    println!(
        "hook     {hook_ns:>7.0} ns per attempt          attempt log line (JSON, sink): {log_ns:>6.0} ns   {:.2}",
        hook_ns / log_ns
    );
    println!(
        "scrape   {:>7.1} µs ({} bytes, 20 types)",
        scrape.as_secs_f64() * 1e6,
        text.len()
    );
}
