//! Group commit: `herald::enqueue(&pool, …)` calls that overlap share statements and commits,
//! and each caller still gets exactly what a lone enqueue would have told it.

use std::sync::Arc;

use herald::{EnqueueError, Enqueued, Notification};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::support::migrated;

/// Starts `make(i)` for every `i` in `0..n` at once (behind one barrier) on `pool`, and returns
/// the results in order.
async fn all_at_once(
    pool: &PgPool,
    n: usize,
    make: impl Fn(usize) -> Notification,
) -> Vec<Result<Enqueued, EnqueueError>> {
    let start = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (pool, start, notification) = (pool.clone(), start.clone(), make(i));
            tokio::spawn(async move {
                start.wait().await;
                herald::enqueue(&pool, &notification).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

fn welcome(business_id: String) -> Notification {
    Notification::email("user-1", "welcome", business_id, "ann@example.com")
        .payload(json!({"n": 1}))
}

#[sqlx::test(migrations = false)]
async fn overlapping_enqueues_share_transactions(pool: PgPool) {
    let pool = migrated(pool).await;
    let results = all_at_once(&pool, 200, |i| welcome(format!("b{i}"))).await;
    let mut ids: Vec<Uuid> = results
        .iter()
        .map(|r| match r {
            Ok(Enqueued::Created { id, .. }) => *id,
            other => panic!("expected created, got {other:?}"),
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "200 distinct notifications");
    let (rows, transactions): (i64, i64) =
        sqlx::query_as("select count(*), count(distinct xmin::text) from herald.intents")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, 200);
    assert!(
        transactions <= 100,
        "200 overlapping enqueues committed in {transactions} transactions"
    );
}

#[sqlx::test(migrations = false)]
async fn a_refusal_in_a_group_is_its_callers_alone(pool: PgPool) {
    let pool = migrated(pool).await;
    let held = herald::enqueue(&pool, &welcome("held".into()))
        .await
        .unwrap()
        .id();
    let missing_endpoint = Uuid::now_v7();
    // 60 callers at once: fresh keys, a conflict, a replay, a webhook to an endpoint that does
    // not exist, and one fresh key enqueued twice.
    let results = all_at_once(&pool, 60, |i| match i {
        10 => welcome("held".into()).payload(json!({"n": 2})),
        20 => welcome("held".into()),
        30 => Notification::webhook("user-1", "welcome", "hook", missing_endpoint),
        40 | 41 => welcome("twice".into()),
        i => welcome(format!("b{i}")),
    })
    .await;
    for (i, result) in results.iter().enumerate() {
        match (i, result) {
            (10, Err(EnqueueError::Conflict { existing_id, .. })) => assert_eq!(*existing_id, held),
            (20, Ok(Enqueued::Duplicate { id, .. })) => assert_eq!(*id, held),
            (30, Err(EnqueueError::Invalid { field, message })) => {
                assert_eq!(*field, "endpoint");
                assert!(message.contains("does not exist"), "{message}");
            }
            (40 | 41, Ok(_)) => {}
            (10 | 20 | 30, other) => panic!("caller {i} got {other:?}"),
            (_, Ok(Enqueued::Created { .. })) => {}
            (_, other) => panic!("caller {i} got {other:?}"),
        }
    }
    let twice: Vec<_> = [&results[40], &results[41]]
        .iter()
        .map(|r| r.as_ref().unwrap().clone())
        .collect();
    assert_eq!(twice[0].id(), twice[1].id(), "one notification for the key");
    assert_eq!(
        twice.iter().filter(|r| r.is_created()).count(),
        1,
        "one of the two created it: {twice:?}"
    );
    let rows: i64 = sqlx::query_scalar("select count(*) from herald.intents")
        .fetch_one(&pool)
        .await
        .unwrap();
    // held + 55 fresh keys + "twice"; nothing for the conflict, the replay or the bad webhook.
    assert_eq!(rows, 1 + 55 + 1);
}

#[sqlx::test(migrations = false)]
async fn callers_that_give_up_stop_no_one_else(pool: PgPool) {
    let pool = migrated(pool).await;
    let start = Arc::new(Barrier::new(41));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (pool, start) = (pool.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                herald::enqueue(&pool, &welcome(format!("b{i}"))).await
            })
        })
        .collect();
    start.wait().await;
    let mut kept = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if i % 2 == 0 {
            task.abort();
        } else {
            kept.push(task);
        }
    }
    for task in kept {
        let result = task.await.unwrap();
        assert!(matches!(result, Ok(Enqueued::Created { .. })), "{result:?}");
    }
    // Whoever led a group that lost callers, the next enqueue is answered.
    let after = herald::enqueue(&pool, &welcome("after".into())).await;
    assert!(matches!(after, Ok(Enqueued::Created { .. })), "{after:?}");
}
