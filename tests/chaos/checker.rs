//! The checker checked: a final state built by hand with each invariant broken once must be
//! reported, line by line, and a correct one must pass. Without this, a suite that always says
//! "all hold" would look the same as one that works.

use std::sync::atomic::Ordering;

use herald::Notification;
use sqlx::PgPool;
use uuid::Uuid;

use crate::invariants::{self, Allowance, Sighting};
use crate::load::{self, Tally};
use crate::support;

/// Sets a row's final state and writes its attempt log: one `(outcome, lease token)` per claim.
async fn finish(pool: &PgPool, id: Uuid, state: &str, attempts: &[(&str, Uuid)]) {
    let finished = state != "pending";
    sqlx::query(
        "update herald.notifications
         set state = $2, attempts = $3, finished_at = case when $4 then now() end
         where id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(attempts.len() as i32)
    .bind(finished)
    .execute(pool)
    .await
    .unwrap();
    for (i, (outcome, token)) in attempts.iter().enumerate() {
        sqlx::query(
            "insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, lease_token)
             values ($1, $2, now(), now(), $3, $4)",
        )
        .bind(id)
        .bind(i as i32 + 1)
        .bind(outcome)
        .bind(token)
        .execute(pool)
        .await
        .unwrap();
    }
}

fn sighting(id: Uuid, processed: bool, accepted: bool) -> Sighting {
    Sighting {
        id: id.to_string(),
        processed,
        accepted,
        signature_valid: true,
    }
}

/// Enqueues `intents` once each and returns their ids and a tally that says so.
async fn enqueue_all(pool: &PgPool, intents: &[Notification]) -> (Vec<Uuid>, Tally) {
    let tally = Tally::default();
    let mut ids = Vec::new();
    for intent in intents {
        ids.push(herald::enqueue(pool, intent).await.unwrap().id());
        tally.created.fetch_add(1, Ordering::SeqCst);
    }
    (ids, tally)
}

#[sqlx::test(migrations = false)]
async fn a_correct_final_state_passes(pool: PgPool) {
    support::migrated(&pool).await;
    let endpoint = support::endpoint(&pool, "default").await;
    let intents = load::webhook_intents(3, &[("default".into(), endpoint)]);
    let (ids, tally) = enqueue_all(&pool, &intents).await;
    let mut sightings = Vec::new();
    for &id in &ids {
        // Refused once, hung up on once (ambiguous), accepted on the third claim.
        let tokens = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        finish(
            &pool,
            id,
            "delivered",
            &[
                ("failed", tokens[0]),
                ("unknown", tokens[1]),
                ("delivered", tokens[2]),
            ],
        )
        .await;
        sightings.extend([
            sighting(id, false, false),
            sighting(id, true, false),
            sighting(id, true, true),
        ]);
    }
    let allowance = Allowance {
        duplicates_after_acceptance: 0,
    };
    let verdict = invariants::check(&pool, &intents, &sightings, &tally, 3, allowance).await;
    assert!(verdict.violations.is_empty(), "{:#?}", verdict.violations);
    assert_eq!(
        (
            verdict.delivered,
            verdict.lost,
            verdict.distinct_ids,
            verdict.raw_sends
        ),
        (3, 0, 3, 9)
    );
    // The third send of each id followed a hang-up: a duplicate send, but not after acceptance.
    assert_eq!(
        (verdict.duplicate_sends, verdict.duplicates_after_acceptance),
        (3, 0)
    );
}

#[sqlx::test(migrations = false)]
async fn each_broken_invariant_is_reported(pool: PgPool) {
    support::migrated(&pool).await;
    let endpoint = support::endpoint(&pool, "default").await;
    let intents = load::webhook_intents(7, &[("default".into(), endpoint)]);
    // The seventh intent is never enqueued: lost.
    let (ids, tally) = enqueue_all(&pool, &intents[..6]).await;
    let token = Uuid::new_v4();
    let fresh = Uuid::new_v4;

    finish(&pool, ids[0], "delivered", &[("delivered", fresh())]).await;
    // Delivered, though the receiver refused it.
    finish(&pool, ids[1], "delivered", &[("delivered", fresh())]).await;
    // Left pending.
    // Two outcomes under one lease token: a stale worker wrote after its lease was reclaimed.
    finish(
        &pool,
        ids[3],
        "delivered",
        &[("unknown", token), ("delivered", token)],
    )
    .await;
    // Dead with attempts to spare.
    finish(&pool, ids[4], "dead", &[("failed", fresh())]).await;
    // Accepted, then sent again, in a run that had no crash to explain it.
    finish(&pool, ids[5], "delivered", &[("delivered", fresh())]).await;

    let mut sightings = vec![
        sighting(ids[0], true, true),
        sighting(ids[1], false, false),
        sighting(ids[2], false, false),
        sighting(ids[3], true, true),
        sighting(ids[4], false, false),
        sighting(ids[5], true, true),
        sighting(ids[5], true, true),
        sighting(Uuid::new_v4(), true, true),
    ];
    sightings[0].signature_valid = false;
    tally.conflict.fetch_add(1, Ordering::SeqCst);
    let allowance = Allowance {
        duplicates_after_acceptance: 0,
    };
    let verdict = invariants::check(&pool, &intents, &sightings, &tally, 8, allowance).await;

    let expected = [
        "6 rows for 7 intents".to_owned(),
        format!("{:?} has no row", {
            let k = intents[6].key();
            (k.tenant, k.user_id, k.type_, k.business_id)
        }),
        format!("{} is delivered but the receiver never accepted it", ids[1]),
        format!("{} ended pending", ids[2]),
        format!("{}: 2 attempt rows under 1 lease tokens", ids[3]),
        format!("{} ended dead after 1 of 8 attempts", ids[4]),
        "1 sends of ids the receiver had already accepted; the chaos explains at most 0".to_owned(),
        "which is no notification".to_owned(),
        "1 requests carried a signature that does not verify".to_owned(),
        "1 replays of an unchanged intent were answered conflict".to_owned(),
        "8 enqueues, but 6 created + 0 duplicate answers".to_owned(),
    ];
    let report = verdict.violations.join("\n");
    for needle in &expected {
        assert!(
            report.contains(needle.as_str()),
            "missing {needle:?} in:\n{report}"
        );
    }
    // No row, delivered without acceptance, pending, dead early.
    assert_eq!(verdict.lost, 4, "{report}");
}
