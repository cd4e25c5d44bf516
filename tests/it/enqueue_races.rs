//! Concurrent enqueues of one intent from separate connections: the UNIQUE constraint makes
//! them one notification, with no errors and no deadlocks.

use std::collections::HashSet;
use std::sync::Arc;

use herald::{Enqueued, Notification};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Barrier;

use crate::support::{count_notifications, migrated};

const RACERS: usize = 50;

/// One race at a time: each holds `RACERS` connections of its own, and two at once beside the
/// rest of the suite would exceed the server's `max_connections` (100 by default).
static ONE_RACE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `RACERS` connections of their own (the test pool is smaller), migrated first.
async fn racers_connections(pool: &PgPool, connect: &PgConnectOptions) -> Vec<PgConnection> {
    migrated(pool.clone()).await;
    let mut conns = Vec::new();
    for _ in 0..RACERS {
        conns.push(PgConnection::connect_with(connect).await.unwrap());
    }
    conns
}

fn intent(business_id: &str) -> Notification {
    Notification::email("user-1", "welcome", business_id, "ann@example.com")
        .payload(json!({"n": 1}))
}

#[sqlx::test(migrations = false)]
async fn fifty_racing_enqueues_make_one_notification(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let _turn = ONE_RACE_AT_A_TIME.lock().await;
    let pool = options.connect_with(connect.clone()).await.unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = racers_connections(&pool, &connect)
        .await
        .into_iter()
        .map(|mut conn| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                herald::enqueue(&mut conn, &intent("order-1"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.unwrap());
    }
    let created = results.iter().filter(|r| r.is_created()).count();
    let duplicates = results
        .iter()
        .filter(|r| matches!(r, Enqueued::Duplicate { .. }))
        .count();
    let ids: HashSet<_> = results.iter().map(Enqueued::id).collect();
    assert_eq!((created, duplicates, ids.len()), (1, RACERS - 1, 1));
    assert_eq!(count_notifications(&pool).await, 1);
}

#[sqlx::test(migrations = false)]
async fn fifty_racing_batches_make_one_notification_per_key(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let _turn = ONE_RACE_AT_A_TIME.lock().await;
    let pool = options.connect_with(connect.clone()).await.unwrap();
    const KEYS: usize = 20;
    let barrier = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = racers_connections(&pool, &connect)
        .await
        .into_iter()
        .enumerate()
        .map(|(racer, mut conn)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                // The same keys in a different order per racer: without a fixed lock order
                // these batches would deadlock each other.
                let batch: Vec<Notification> = (0..KEYS)
                    .map(|k| intent(&format!("order-{}", (k * 7 + racer) % KEYS)))
                    .collect();
                barrier.wait().await;
                let results = herald::enqueue_many(&mut conn, &batch).await.unwrap();
                batch
                    .iter()
                    .map(|n| n.key().business_id)
                    .zip(results)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut by_key: std::collections::HashMap<String, Vec<Enqueued>> = Default::default();
    for racer in racers {
        for (key, result) in racer.await.unwrap() {
            by_key.entry(key).or_default().push(result);
        }
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, results) in &by_key {
        let created = results.iter().filter(|r| r.is_created()).count();
        let ids: HashSet<_> = results.iter().map(Enqueued::id).collect();
        assert_eq!(
            (results.len(), created, ids.len()),
            (RACERS, 1, 1),
            "key {key}"
        );
    }
    assert_eq!(count_notifications(&pool).await, KEYS as i64);
}

#[sqlx::test(migrations = false)]
async fn a_rolled_back_racer_does_not_lose_the_enqueue(pool: PgPool) {
    let pool = migrated(pool).await;
    // T1 takes the key and holds its transaction; T2 blocks on the key; T1 rolls back; T2
    // must then create the notification rather than report a duplicate of nothing.
    let mut t1 = pool.begin().await.unwrap();
    herald::enqueue(&mut *t1, &intent("order-1")).await.unwrap();
    let pool2 = pool.clone();
    let t2 =
        tokio::spawn(async move { herald::enqueue(&pool2, &intent("order-1")).await.unwrap() });
    // Wait until T2 is blocked on T1's row lock.
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    t1.rollback().await.unwrap();
    let out = t2.await.unwrap();
    assert!(out.is_created(), "{out:?}");
    assert_eq!(count_notifications(&pool).await, 1);
}
