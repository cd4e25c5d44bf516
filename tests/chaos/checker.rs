//! The checker checked: a final state built by hand with each invariant broken once must be
//! reported, line by line, and a correct one must pass. Without this, a suite that always says
//! "all hold" would look the same as one that works.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::invariants::{self, Chaos, Sighting};
use crate::load::{self, DOOMED_EVERY, Intents, MAX_ATTEMPTS, Tally};
use crate::support;

/// Sets a row's final state and writes its attempt log: one `(outcome, lease token, error)`
/// per claim.
async fn finish(pool: &PgPool, id: Uuid, state: &str, attempts: &[(&str, Uuid, &str)]) {
    assert_eq!(support::finish(pool, id, state, support::At::Now).await, 1);
    // A dead row names its reason, as the daemon writes it.
    sqlx::query(
        "update herald.intents set attempts = $2,
             last_error = case when state = 'dead' then 'attempts exhausted: 500' end
         where id = $1",
    )
    .bind(id)
    .bind(attempts.len() as i32)
    .execute(pool)
    .await
    .unwrap();
    for (i, (outcome, token, error)) in attempts.iter().enumerate() {
        sqlx::query(
            "insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, lease_token, error)
             values ($1, $2, now(), now(), $3, $4, nullif($5, ''))",
        )
        .bind(id)
        .bind(i as i32 + 1)
        .bind(outcome)
        .bind(token)
        .bind(error)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// A sighting carrying the intent's payload.
fn sighting(id: Uuid, order: usize, processed: bool, accepted: bool) -> Sighting {
    Sighting {
        id: id.to_string(),
        processed,
        accepted,
        signature_valid: true,
        data: Some(json!({ "order": order, "lines": [order, order * 2], "note": "ünïcødé & <b>" })),
        span: None,
    }
}

/// `count` intents (every `DOOMED_EVERY`th doomed), each enqueued once; their ids.
async fn intents_enqueued(pool: &PgPool, count: usize) -> (Intents, Vec<Uuid>, Tally) {
    let endpoint = support::endpoint(pool, "default").await;
    let doom = support::endpoint(pool, "default").await;
    let intents = load::webhook_intents(count, &[("default".into(), endpoint)], doom);
    let tally = Tally::new(count);
    let mut ids = Vec::new();
    for (i, intent) in intents.notifications.iter().enumerate() {
        ids.push(herald::enqueue(pool, intent).await.unwrap().id());
        tally.created[i].fetch_add(1, Ordering::SeqCst);
    }
    (intents, ids, tally)
}

fn calm() -> Chaos {
    Chaos {
        struck_pids: HashSet::new(),
        crashes: 0,
        unexplained_per_crash: 0,
    }
}

#[sqlx::test(migrations = false)]
async fn a_correct_final_state_passes(pool: PgPool) {
    let pool = support::migrated(pool).await;
    let (intents, ids, tally) = intents_enqueued(&pool, DOOMED_EVERY).await;
    let killed = "host:4242:run";
    let mut sightings = Vec::new();
    for (order, &id) in ids.iter().enumerate() {
        let t = || Uuid::new_v4();
        if intents.doomed[order] {
            // Refused on each of its three attempts.
            finish(
                &pool,
                id,
                "dead",
                &[
                    ("failed", t(), ""),
                    ("failed", t(), ""),
                    ("failed", t(), ""),
                ],
            )
            .await;
            sightings.extend((0..3).map(|_| sighting(id, order, false, false)));
            continue;
        }
        // Refused, then accepted by a daemon that was killed before recording it (its lease
        // reclaimed), then accepted again.
        let reclaimed = format!("lease of {killed} expired during attempt 2: the daemon stopped");
        finish(
            &pool,
            id,
            "delivered",
            &[
                ("failed", t(), ""),
                ("unknown", t(), &reclaimed),
                ("delivered", t(), ""),
            ],
        )
        .await;
        sightings.extend([
            sighting(id, order, false, false),
            sighting(id, order, true, true),
            sighting(id, order, true, true),
        ]);
    }
    let chaos = Chaos {
        struck_pids: HashSet::from([4242]),
        ..calm()
    };
    let verdict = invariants::check(&pool, &intents, &sightings, &tally, &chaos).await;
    assert!(verdict.violations.is_empty(), "{:#?}", verdict.violations);
    let n = DOOMED_EVERY - 1;
    assert_eq!(
        (
            verdict.delivered,
            verdict.dead,
            verdict.lost,
            verdict.distinct_ids
        ),
        (n, 1, 0, DOOMED_EVERY)
    );
    assert_eq!(verdict.raw_sends, 3 * DOOMED_EVERY);
    assert_eq!(
        (
            verdict.duplicate_sends,
            verdict.duplicates_after_acceptance,
            verdict.reclaimed
        ),
        (n, n, n)
    );
}

#[sqlx::test(migrations = false)]
async fn each_broken_invariant_is_reported(pool: PgPool) {
    let pool = support::migrated(pool).await;
    let (mut intents, ids, tally) = intents_enqueued(&pool, 9).await;
    // A tenth intent that was never enqueued: lost.
    let extra = load::webhook_intents(10, &[("default".into(), Uuid::new_v4())], Uuid::new_v4());
    intents.notifications.push(extra.notifications[9].clone());
    intents.doomed.push(false);
    tally.created[8].fetch_add(1, Ordering::SeqCst);
    let t = || Uuid::new_v4();
    let token = t();

    finish(&pool, ids[0], "delivered", &[("delivered", t(), "")]).await;
    // Delivered, though the receiver refused it.
    finish(&pool, ids[1], "delivered", &[("delivered", t(), "")]).await;
    // ids[2] is left pending.
    // Two outcomes under one lease token: a stale worker wrote after its lease was reclaimed.
    finish(
        &pool,
        ids[3],
        "delivered",
        &[("unknown", token, ""), ("delivered", token, "")],
    )
    .await;
    // Dead, though it was not doomed.
    finish(&pool, ids[4], "dead", &[("failed", t(), "")]).await;
    // Accepted, then sent again with no reclaimed lease to explain it.
    finish(&pool, ids[5], "delivered", &[("delivered", t(), "")]).await;
    // The lease of a daemon nobody touched expired.
    let healthy = "lease of host:777:run expired during attempt 1: the daemon stopped";
    finish(
        &pool,
        ids[6],
        "delivered",
        &[("unknown", t(), healthy), ("delivered", t(), "")],
    )
    .await;
    // Sent three times on one claim.
    finish(&pool, ids[7], "delivered", &[("delivered", t(), "")]).await;
    // ids[8]: created twice (set above), delivered with another payload in the request.
    finish(&pool, ids[8], "delivered", &[("delivered", t(), "")]).await;

    let mut forged = sighting(ids[0], 0, true, true);
    forged.signature_valid = false;
    let mut other_payload = sighting(ids[8], 8, true, true);
    other_payload.data = Some(json!({ "order": 1 }));
    let sightings = vec![
        forged,
        sighting(ids[1], 1, false, false),
        sighting(ids[2], 2, false, false),
        sighting(ids[3], 3, true, true),
        sighting(ids[4], 4, false, false),
        sighting(ids[5], 5, true, true),
        sighting(ids[5], 5, true, true),
        sighting(ids[6], 6, true, true),
        sighting(ids[7], 7, false, false),
        sighting(ids[7], 7, false, false),
        sighting(ids[7], 7, true, true),
        other_payload,
        sighting(Uuid::new_v4(), 0, true, true),
    ];
    tally.conflict.fetch_add(1, Ordering::SeqCst);
    tally.retried.fetch_add(2, Ordering::SeqCst);
    let verdict = invariants::check(&pool, &intents, &sightings, &tally, &calm()).await;

    let key9 = intents.notifications[9].key();
    let expected = [
        "9 rows for 10 intents".to_owned(),
        format!(
            "{:?} has no row",
            (key9.tenant, key9.user_id, key9.type_, key9.business_id)
        ),
        format!(
            "{} ended delivered after 1 of {MAX_ATTEMPTS} attempts (doomed: false; accepted by the receiver: false;",
            ids[1]
        ),
        format!("{} ended pending", ids[2]),
        format!("{}: 2 attempt rows under 1 lease tokens", ids[3]),
        format!(
            "{} ended dead after 1 of {MAX_ATTEMPTS} attempts (doomed: false",
            ids[4]
        ),
        "1 acceptances by the receiver were followed by another send of the same id, not explained by a reclaimed lease"
            .to_owned(),
        format!(
            "{}: the lease of host:777:run, a daemon the scenario left alone, expired",
            ids[6]
        ),
        format!("{} was sent 3 times on 1 claims", ids[7]),
        format!("{}: a request carried another payload", ids[8]),
        "2 enqueues answered created".to_owned(),
        "which is no notification".to_owned(),
        "1 requests carried a signature that does not verify".to_owned(),
        "1 replays of an unchanged intent were answered conflict".to_owned(),
        "2 enqueues failed with a database error, with no crash to explain them".to_owned(),
    ];
    let report = verdict.violations.join("\n");
    for needle in &expected {
        assert!(
            report.contains(needle.as_str()),
            "missing {needle:?} in:\n{report}"
        );
    }
    // No row, delivered without acceptance, pending, dead though not doomed.
    assert_eq!(verdict.lost, 4, "{report}");
}

#[sqlx::test(migrations = false)]
async fn a_doomed_row_dead_without_a_reason_is_reported(pool: PgPool) {
    let pool = support::migrated(pool).await;
    let (intents, ids, tally) = intents_enqueued(&pool, DOOMED_EVERY).await;
    let mut sightings = Vec::new();
    for (order, &id) in ids.iter().enumerate() {
        let t = || Uuid::new_v4();
        if intents.doomed[order] {
            let refused = [
                ("failed", t(), ""),
                ("failed", t(), ""),
                ("failed", t(), ""),
            ];
            finish(&pool, id, "dead", &refused).await;
            sightings.extend((0..3).map(|_| sighting(id, order, false, false)));
        } else {
            finish(&pool, id, "delivered", &[("delivered", t(), "")]).await;
            sightings.push(sighting(id, order, true, true));
        }
    }
    let doomed = ids[DOOMED_EVERY - 1];
    sqlx::query("update herald.intents set last_error = null where id = $1")
        .bind(doomed)
        .execute(&pool)
        .await
        .unwrap();
    let verdict = invariants::check(&pool, &intents, &sightings, &tally, &calm()).await;
    let report = verdict.violations.join("\n");
    assert!(
        report.contains(&format!(
            "{doomed} ended dead after 3 of 3 attempts (doomed: true; accepted by the receiver: false; last error: None)"
        )),
        "{report}"
    );
    assert_eq!(verdict.violations.len(), 1, "{report}");

    // Dead with attempts to spare because its endpoint was disabled: a stated reason.
    sqlx::query(
        "update herald.intents set attempts = 1, last_error = 'endpoint ' || destination
             || ' disabled: circuit breaker open since 2026-12-05T18:00:00Z (breaker.disable_after)'
         where id = $1",
    )
    .bind(doomed)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("delete from herald.attempts where notification_id = $1 and attempt > 1")
        .bind(doomed)
        .execute(&pool)
        .await
        .unwrap();
    let verdict = invariants::check(&pool, &intents, &sightings[..], &tally, &calm()).await;
    let report = verdict.violations.join("\n");
    // Only its three sends on one claim remain to report.
    assert!(
        report.contains(&format!("{doomed} was sent 3 times on 1 claims")),
        "{report}"
    );
    assert_eq!(verdict.violations.len(), 1, "{report}");

    // Gone dead waiting when its endpoint was disabled, never sent: nothing to report.
    sqlx::query("update herald.intents set attempts = 0 where id = $1")
        .bind(doomed)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("delete from herald.attempts where notification_id = $1")
        .bind(doomed)
        .execute(&pool)
        .await
        .unwrap();
    let unsent: Vec<Sighting> = sightings
        .iter()
        .filter(|s| s.id != doomed.to_string())
        .cloned()
        .collect();
    let verdict = invariants::check(&pool, &intents, &unsent, &tally, &calm()).await;
    assert!(verdict.violations.is_empty(), "{:#?}", verdict.violations);
    assert_eq!(verdict.dead, 1);
}

#[sqlx::test(migrations = false)]
async fn each_broken_limit_and_counter_is_reported(pool: PgPool) {
    let pool = support::migrated(pool).await;
    let endpoint = support::endpoint(&pool, "default").await;
    sqlx::query(
        "update herald.destinations set max_in_flight = 2, rate_count = 1, rate_unit = 's'
         where endpoint_id = $1",
    )
    .bind(endpoint)
    .execute(&pool)
    .await
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let intent = herald::Notification::webhook("u", "t", format!("b{i}"), endpoint);
        ids.push(herald::enqueue(&pool, &intent).await.unwrap().id());
    }
    // Three claims within one second at 1/s (at most 2), each answered while the others were.
    // One statement, so that the 0.45 s steps are exact on the database clock however busy
    // the machine is.
    sqlx::query(
        "insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, lease_token)
         select t.id, 1, now() + make_interval(secs => (t.ord - 1) * 0.45), now() + interval '2 s',
                'delivered', gen_random_uuid()
         from unnest($1::uuid[]) with ordinality as t(id, ord)",
    )
    .bind(&ids)
    .execute(&pool)
    .await
    .unwrap();
    let t0 = std::time::Instant::now();
    let sightings: Vec<Sighting> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Sighting {
            span: Some((
                t0 + std::time::Duration::from_millis(i as u64 * 10),
                t0 + std::time::Duration::from_secs(1),
            )),
            ..sighting(*id, i, true, true)
        })
        .collect();
    // A lease left behind.
    support::lease(
        &pool,
        ids[0],
        "host:1:run",
        support::At::Now,
        support::At::In("1 min"),
    )
    .await;

    let mut verdict = invariants::Verdict::default();
    let watched = crate::watch::Watched::default();
    crate::isolation::check(&pool, &sightings, &watched, &mut verdict).await;
    let report = verdict.violations.join("\n");
    for needle in [
        "the watcher never sampled herald.destinations".to_owned(),
        "1 queue rows are leased once every daemon has stopped".to_owned(),
        format!(
            "destination {endpoint}: 3 requests were being answered at once, max_in_flight is 2"
        ),
        format!("destination {endpoint}: 3 claims within 1 s at a rate of 1/s (at most 2)"),
    ] {
        assert!(report.contains(&needle), "missing {needle:?} in:\n{report}");
    }
    assert_eq!(verdict.violations.len(), 4, "{report}");
    assert_eq!(
        verdict.limit_peaks,
        ["3/2 in flight", "3/2 claims per s (3 arrivals)"]
    );
}

/// The isolation checks on samples built by hand.
mod isolation_samples {
    use std::time::{Duration, Instant};

    use chrono::{DateTime, TimeDelta, Utc};
    use uuid::Uuid;

    use crate::isolation::{
        KNOWN_PROBE_BUG, peak_concurrency, peak_in_window, rate_bound, sample_violations,
    };
    use crate::watch::{Sample, Watched};

    /// A sample of destination `d` at `ms` milliseconds: `breaker` (`closed`, or `open` /
    /// `half_open` since `opened_ms` with the probe due at `probe_ms`) and `leases`.
    fn at(
        ms: i64,
        d: &str,
        breaker: &str,
        opened_ms: Option<i64>,
        probe_ms: Option<i64>,
        leases: &[u128],
    ) -> Sample {
        let t = |ms: i64| DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms);
        let mut leases: Vec<Uuid> = leases.iter().map(|n| Uuid::from_u128(*n)).collect();
        leases.sort();
        Sample {
            at: t(ms),
            destination: d.to_owned(),
            breaker: breaker.to_owned(),
            opened_at: opened_ms.map(t),
            next_probe_at: probe_ms.map(t),
            in_flight: Some(leases.len() as i32),
            max_in_flight: None,
            leases,
        }
    }

    fn watched(samples: Vec<Sample>) -> Watched {
        let mut watched = Watched::default();
        for sample in samples {
            watched.add(vec![sample]);
        }
        watched
    }

    /// Opens with leases 1 and 2 of the closed breaker in flight; a probe (3) at its time,
    /// which fails; another (4) at the doubled interval, which succeeds and closes it.
    fn a_correct_opening() -> Vec<Sample> {
        let (o, p1, p2) = (Some(1_000), Some(1_200), Some(1_600));
        vec![
            at(900, "e", "closed", None, None, &[1, 2]),
            at(1_010, "e", "open", o, p1, &[1, 2]),
            at(1_100, "e", "open", o, p1, &[2]),
            at(1_210, "e", "half_open", o, p1, &[2, 3]),
            at(1_250, "e", "open", o, p2, &[2]),
            at(1_620, "e", "half_open", o, p2, &[2, 4]),
            at(1_700, "e", "closed", None, None, &[2, 5, 6]),
        ]
    }

    #[test]
    fn a_correct_history_passes() {
        let findings = sample_violations(&watched(a_correct_opening()));
        assert!(findings.violations.is_empty(), "{:#?}", findings.violations);
        assert!(findings.known.is_empty(), "{:#?}", findings.known);
    }

    #[test]
    fn each_broken_isolation_invariant_is_reported() {
        let (o, p) = (Some(1_000), Some(1_200));
        let mut drift = at(500, "drift", "closed", None, None, &[1, 2]);
        drift.in_flight = Some(3);
        let mut capped = at(500, "capped", "closed", None, None, &[1, 2, 3]);
        capped.max_in_flight = Some(2);
        let samples = vec![
            drift,
            capped,
            // Claimed 100 ms before the probe was due.
            at(1_010, "early", "open", o, p, &[]),
            at(1_100, "early", "half_open", o, p, &[7]),
            // A claim that left the breaker open as it was.
            at(1_010, "unmoved", "open", o, p, &[]),
            at(1_300, "unmoved", "open", o, p, &[8]),
            // A second probe while the first is leased, nothing ended.
            at(1_010, "twice", "open", o, p, &[1]),
            at(1_210, "twice", "half_open", o, p, &[1, 9]),
            at(1_400, "twice", "half_open", o, Some(1_390), &[1, 9, 10]),
            // The same after lease 1 (taken before the opening) ended: still a violation.
            at(1_010, "known", "open", o, p, &[1]),
            at(1_210, "known", "half_open", o, p, &[1, 11]),
            at(1_400, "known", "half_open", o, Some(1_390), &[11, 12]),
        ];
        let findings = sample_violations(&watched(samples));
        let report = findings.violations.join("\n");
        for needle in [
            "in_flight differs from the leases held: 1 samples, e.g.\n    drift at 00:00:00.500: in_flight 3 with 2 leases",
            "more leases than max_in_flight: 1 samples, e.g.\n    capped at 00:00:00.500: 3 leases, max_in_flight 2",
            "a claim while the breaker was open, before the probe was due: 1 samples, e.g.\n    early: open since 00:00:01.000, probe due at 00:00:01.200, yet at 00:00:01.100 it was half_open",
            "a claim left the breaker open as it was (a probe's claim makes it half_open): 1 samples, e.g.\n    unmoved at 00:00:01.300",
            "two probes in flight at once, with no other lease ended to admit one: 1 samples, e.g.\n    twice at 00:00:01.400: 2 leases taken",
        ] {
            assert!(report.contains(needle), "missing {needle:?} in:\n{report}");
        }
        assert_eq!(findings.violations.len(), 6, "{report}");
        assert!(findings.known.is_empty(), "{:#?}", findings.known);
        assert!(
            report.contains(KNOWN_PROBE_BUG)
                && report.contains("known at 00:00:01.400: 2 leases taken"),
            "{report}"
        );
    }

    #[test]
    fn limits_are_measured_at_their_edges() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Back to back does not overlap; three at once does.
        assert_eq!(
            peak_concurrency([(ms(0), ms(10)), (ms(10), ms(20))].into_iter()),
            1
        );
        assert_eq!(
            peak_concurrency(
                [
                    (ms(0), ms(30)),
                    (ms(5), ms(25)),
                    (ms(10), ms(11)),
                    (ms(11), ms(12))
                ]
                .into_iter()
            ),
            3
        );
        // A closed window of one second: its two ends are in it.
        let t = |ms: i64| DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms);
        let mut claims = vec![t(0), t(1_000), t(1_001), t(500), t(2_001)];
        let one_second = |a: DateTime<Utc>, b: DateTime<Utc>| b - a <= TimeDelta::seconds(1);
        assert_eq!(peak_in_window(&mut claims, one_second), 3);
        assert_eq!(rate_bound(20, "s"), 40);
        assert_eq!(rate_bound(1, "s"), 2);
        // 30 a minute: a bucket of one token, half a token a second.
        assert_eq!(rate_bound(30, "m"), 1);
        assert_eq!(rate_bound(120, "m"), 4);
    }
}
