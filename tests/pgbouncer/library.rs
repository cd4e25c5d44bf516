//! The library through PgBouncer: concurrent enqueues and replays on a pool (group commit),
//! `enqueue_many`, and enqueues inside the application's own transaction.

use std::collections::HashSet;

use herald::{EnqueueError, Enqueued, Notification};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{pooled, switch};
use crate::support::migrated;
use crate::support::pgbouncer::PgBouncer;

fn notification(business_id: &str) -> Notification {
    Notification::email("user-1", "order_shipped", business_id, "ann@example.com")
        .payload(json!({"order": business_id}))
}

async fn count(direct: &PgPool, prefix: &str) -> i64 {
    sqlx::query_scalar("select count(*) from herald.notifications where business_id like $1 || '%'")
        .bind(prefix)
        .fetch_one(direct)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn concurrent_enqueues_and_replays_through_pgbouncer_make_one_notification_per_key(
    pool: PgPool,
) {
    let direct = migrated(pool).await;
    let bouncer = PgBouncer::start(2).await;
    let _on = switch(true).await;
    let pool = pooled(&bouncer, &direct, 16).await;

    // 16 clients, each enqueueing all 100 keys (each from another starting point): 1,600 calls
    // over 2 server connections, grouped and replayed.
    const KEYS: usize = 100;
    let tasks: Vec<_> = (0..16)
        .map(|client| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for k in 0..KEYS {
                    let key = (k + client * 7) % KEYS;
                    let out = herald::enqueue(&pool, &notification(&format!("conc-{key}")))
                        .await
                        .unwrap_or_else(|e| panic!("enqueue through PgBouncer: {e}"));
                    ids.push((key, out.id()));
                }
                ids
            })
        })
        .collect();
    let mut by_key = vec![HashSet::new(); KEYS];
    for task in tasks {
        for (key, id) in task.await.unwrap() {
            by_key[key].insert(id);
        }
    }
    assert!(
        by_key.iter().all(|ids| ids.len() == 1),
        "every replay of a key answers the same id: {by_key:?}"
    );
    assert_eq!(count(&direct, "conc-").await, KEYS as i64);

    // A replay is a duplicate of the same id; the same key with another payload is refused.
    let first = by_key[0].iter().next().copied().unwrap();
    let again = herald::enqueue(&pool, &notification("conc-0"))
        .await
        .unwrap();
    assert!(
        matches!(again, Enqueued::Duplicate { id, .. } if id == first),
        "{again:?}"
    );
    let other = notification("conc-0").payload(json!({"order": "something else"}));
    match herald::enqueue(&pool, &other).await {
        Err(EnqueueError::Conflict { existing_id, .. }) => assert_eq!(existing_id, first),
        other => panic!("a conflict, not {other:?}"),
    }
    // Invalid input is refused by the database as well, as a value, not a broken connection.
    let bad = herald::enqueue(
        &pool,
        &Notification::webhook("u", "t", "conc-bad", Uuid::now_v7()),
    )
    .await;
    assert!(matches!(bad, Err(EnqueueError::Invalid { .. })), "{bad:?}");
    assert!(
        herald::enqueue(&pool, &notification("conc-after"))
            .await
            .is_ok()
    );
}

#[sqlx::test(migrations = false)]
async fn enqueue_many_through_pgbouncer_is_all_or_nothing_and_replays(pool: PgPool) {
    let direct = migrated(pool).await;
    let bouncer = PgBouncer::start(2).await;
    let _on = switch(true).await;
    let pool = pooled(&bouncer, &direct, 4).await;

    let batch: Vec<_> = (0..50)
        .map(|i| notification(&format!("many-{i}")))
        .collect();
    let first = herald::enqueue_many(&pool, &batch).await.unwrap();
    assert!(first.iter().all(Enqueued::is_created));
    let again = herald::enqueue_many(&pool, &batch).await.unwrap();
    assert_eq!(
        first.iter().map(Enqueued::id).collect::<Vec<_>>(),
        again.iter().map(Enqueued::id).collect::<Vec<_>>()
    );
    assert!(again.iter().all(|e| !e.is_created()));

    // One conflicting item refuses the whole batch: nothing of it is written.
    let mut mixed: Vec<_> = (0..5)
        .map(|i| notification(&format!("many-new-{i}")))
        .collect();
    mixed.push(notification("many-3").payload(json!({"order": "changed"})));
    let refused = herald::enqueue_many(&pool, &mixed).await;
    assert!(
        matches!(refused, Err(EnqueueError::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(count(&direct, "many-new-").await, 0);
    assert_eq!(count(&direct, "many-").await, 50);
}

#[sqlx::test(migrations = false)]
async fn enqueues_in_the_applications_transaction_through_pgbouncer_commit_and_roll_back_with_it(
    pool: PgPool,
) {
    let direct = migrated(pool).await;
    let bouncer = PgBouncer::start(2).await;
    let _on = switch(true).await;
    let pool = pooled(&bouncer, &direct, 4).await;

    for commit in [false, true] {
        let prefix = if commit { "tx-kept" } else { "tx-gone" };
        let mut tx = pool.begin().await.unwrap();
        let one = herald::enqueue(&mut *tx, &notification(&format!("{prefix}-1")))
            .await
            .unwrap();
        let replay = herald::enqueue(&mut *tx, &notification(&format!("{prefix}-1")))
            .await
            .unwrap();
        assert!(one.is_created());
        assert_eq!((replay.id(), replay.is_created()), (one.id(), false));
        // A refusal leaves the transaction usable.
        let conflict = notification(&format!("{prefix}-1")).payload(json!({"order": 0}));
        assert!(herald::enqueue(&mut *tx, &conflict).await.is_err());
        let batch: Vec<_> = (2..12)
            .map(|i| notification(&format!("{prefix}-{i}")))
            .collect();
        herald::enqueue_many(&mut *tx, &batch).await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        assert_eq!(count(&direct, prefix).await, if commit { 11 } else { 0 });
    }
}

/// What the switch is for. Without it sqlx names its statements (`sqlx_s_1`, …) on the server
/// connection it happens to use; through PgBouncer a second client gets that same server
/// connection (here the only one) and finds the name taken. With it, the same connections
/// enqueue, leftover names and all.
#[sqlx::test(migrations = false)]
async fn without_transaction_pooling_an_enqueue_through_pgbouncer_fails(pool: PgPool) {
    let direct = migrated(pool).await;
    let bouncer = PgBouncer::start(1).await;
    let off = switch(false).await;
    let pool = pooled(&bouncer, &direct, 2).await;
    let (mut first, mut second) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    herald::enqueue(&mut *first, &notification("off-1"))
        .await
        .expect("the first client's statement is the first of its name");
    match herald::enqueue(&mut *second, &notification("off-2")).await {
        Err(EnqueueError::Database(e)) => assert!(
            e.to_string()
                .contains("prepared statement \"sqlx_s_1\" already exists"),
            "{e}"
        ),
        other => panic!("the name is taken on the shared server connection: {other:?}"),
    }
    drop(off);

    let _on = switch(true).await;
    for (conn, business_id) in [(&mut first, "on-1"), (&mut second, "on-2")] {
        let out = herald::enqueue(&mut **conn, &notification(business_id))
            .await
            .unwrap();
        assert!(out.is_created());
    }
    drop((first, second));
    let out = herald::enqueue(&pool, &notification("on-3")).await;
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(count(&direct, "on-").await, 3);
    assert_eq!(count(&direct, "off-").await, 1);
}
