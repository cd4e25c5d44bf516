//! The checker checked: a final state built by hand with each invariant broken once must be
//! reported, line by line, and a correct one must pass. Without this, a suite that always says
//! "all hold" would look the same as one that works.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::invariants::{self, Chaos, Sighting};
use crate::load::{self, DOOMED_EVERY, Intents, Tally};
use crate::support;

/// Sets a row's final state and writes its attempt log: one `(outcome, lease token, error)`
/// per claim.
async fn finish(pool: &PgPool, id: Uuid, state: &str, attempts: &[(&str, Uuid, &str)]) {
    assert_eq!(support::finish(pool, id, state, support::At::Now).await, 1);
    sqlx::query("update herald.intents set attempts = $2 where id = $1")
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
            "{} ended delivered after 1 of 24 attempts (doomed: false; accepted by the receiver: false)",
            ids[1]
        ),
        format!("{} ended pending", ids[2]),
        format!("{}: 2 attempt rows under 1 lease tokens", ids[3]),
        format!(
            "{} ended dead after 1 of 24 attempts (doomed: false",
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
