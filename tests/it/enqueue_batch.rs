//! `enqueue_many`: one statement for the batch, results in input order, all or nothing.

use herald::{EnqueueError, Enqueued, Notification};
use serde_json::json;
use sqlx::PgPool;

use crate::support::{count_notifications, disable_endpoint, endpoint, finished_rows, migrated};

fn intent(i: usize) -> Notification {
    Notification::email(
        format!("user-{}", i % 13),
        "digest",
        format!("b-{i}"),
        "ann@example.com",
    )
    .payload(json!({"i": i}))
}

#[sqlx::test(migrations = false)]
async fn a_thousand_items_with_repeats_inside_and_against_existing_rows(pool: PgPool) {
    let pool = migrated(pool).await;
    // 100 keys exist before the batch.
    let existing: Vec<Notification> = (0..100).map(intent).collect();
    let before = herald::enqueue_many(&pool, &existing).await.unwrap();
    assert!(before.iter().all(Enqueued::is_created));

    // The batch: 700 new keys (100..800), 200 repeats of new keys, 100 replays of existing.
    let mut batch: Vec<Notification> = (100..800).map(intent).collect();
    batch.extend((100..300).map(intent));
    batch.extend((0..100).map(intent));
    // Interleave so repeats are not all at the end.
    batch.sort_by_key(|n| (n.key().business_id.len(), n.key().business_id.clone()));
    assert_eq!(batch.len(), 1000);

    let results = herald::enqueue_many(&pool, &batch).await.unwrap();
    assert_eq!(results.len(), 1000);
    let mut first_id: std::collections::HashMap<String, uuid::Uuid> = Default::default();
    for (n, existing_result) in existing.iter().zip(&before) {
        first_id.insert(n.key().business_id, existing_result.id());
    }
    let mut created = 0;
    for (n, result) in batch.iter().zip(&results) {
        let key = n.key().business_id;
        match first_id.get(&key) {
            Some(id) => {
                assert!(
                    matches!(result, Enqueued::Duplicate { .. }),
                    "{key}: {result:?}"
                );
                assert_eq!(
                    result.id(),
                    *id,
                    "{key}: repeats resolve to one notification"
                );
            }
            None => {
                assert!(
                    result.is_created(),
                    "{key}: first sight of a new key: {result:?}"
                );
                first_id.insert(key, result.id());
                created += 1;
            }
        }
    }
    assert_eq!(created, 700);
    assert_eq!(count_notifications(&pool).await, 800);
    // Results are in input order: each result's row holds that item's key.
    let (id, business_id): (uuid::Uuid, String) =
        sqlx::query_as("select id, business_id from herald.notifications where id = $1")
            .bind(results[500].id())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (id, business_id),
        (results[500].id(), batch[500].key().business_id)
    );
}

#[sqlx::test(migrations = false)]
async fn a_conflicting_item_fails_the_whole_batch(pool: PgPool) {
    let pool = migrated(pool).await;
    let held = herald::enqueue(&pool, &intent(5)).await.unwrap();
    let mut batch: Vec<Notification> = (10..20).map(intent).collect();
    batch.push(intent(5).payload(json!({"changed": true})));
    match herald::enqueue_many(&pool, &batch).await {
        Err(EnqueueError::Conflict {
            existing_id,
            differs: "payload",
            ..
        }) => {
            assert_eq!(existing_id, held.id())
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        count_notifications(&pool).await,
        1,
        "nothing of the batch was written"
    );
}

#[sqlx::test(migrations = false)]
async fn two_new_intents_under_one_key_in_a_batch_are_refused(pool: PgPool) {
    let pool = migrated(pool).await;
    let batch = vec![intent(1), intent(2), intent(1).payload(json!({"other": 1}))];
    let err = herald::enqueue_many(&pool, &batch).await.unwrap_err();
    assert!(
        matches!(err, EnqueueError::Invalid { field: "batch", .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("items 0 and 2 share the key"),
        "{err}"
    );
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn an_invalid_item_is_named_by_its_index(pool: PgPool) {
    let pool = migrated(pool).await;
    let batch = vec![
        intent(1),
        Notification::email("u", "t", "", "ann@example.com"),
    ];
    let err = herald::enqueue_many(&pool, &batch).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid business_id: must not be empty (item 1)"
    );

    let hook = endpoint(&pool, "default").await;
    disable_endpoint(&pool, hook, "disabled by operator").await;
    let batch = vec![
        intent(1),
        intent(2),
        Notification::webhook("u", "t", "b", hook),
    ];
    let err = herald::enqueue_many(&pool, &batch).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid endpoint: webhook endpoint {hook} is disabled: disabled by operator (item 2)"
        )
    );
    assert_eq!(
        count_notifications(&pool).await,
        0,
        "items before the bad one were not kept"
    );
}

#[sqlx::test(migrations = false)]
async fn a_refused_batch_leaves_the_callers_transaction_usable(pool: PgPool) {
    let pool = migrated(pool).await;
    herald::enqueue(&pool, &intent(5)).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let kept = herald::enqueue(&mut *tx, &intent(1)).await.unwrap();
    let refused = herald::enqueue_many(&mut *tx, &[intent(2), intent(5).payload(json!({}))]).await;
    assert!(
        matches!(refused, Err(EnqueueError::Conflict { .. })),
        "{refused:?}"
    );
    tx.commit().await.unwrap();
    let kept_rows: i64 =
        sqlx::query_scalar("select count(*) from herald.notifications where id = $1")
            .bind(kept.id())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kept_rows, 1, "the caller's own enqueue committed");
    assert_eq!(
        count_notifications(&pool).await,
        2,
        "the refused batch wrote nothing"
    );
}

#[sqlx::test(migrations = false)]
async fn a_batch_in_a_rolled_back_transaction_leaves_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let mut tx = pool.begin().await.unwrap();
    let batch: Vec<Notification> = (0..10).map(intent).collect();
    let results = herald::enqueue_many(&mut *tx, &batch).await.unwrap();
    assert!(results.iter().all(Enqueued::is_created));
    tx.rollback().await.unwrap();
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn an_empty_batch_does_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    assert!(herald::enqueue_many(&pool, &[]).await.unwrap().is_empty());
}

/// A batch finds the rows that already hold its keys through the key index: its cost must not
/// grow with the table (a hash join over a sequential scan would read all of it per batch).
#[sqlx::test(migrations = false)]
async fn a_batch_looks_up_existing_keys_by_index_not_by_scanning_the_table(pool: PgPool) {
    let pool = migrated(pool).await;
    let existing: Vec<Notification> = (0..100).map(intent).collect();
    herald::enqueue_many(&pool, &existing).await.unwrap();
    // History, as a table in production has it, and statistics that know it.
    finished_rows(&pool, 20_000, "history", "delivered", "1 day").await;
    sqlx::query("analyze herald.intents, herald.queue")
        .execute(&pool)
        .await
        .unwrap();

    // 100 replays of existing keys and 100 new ones. The scan counters are read before and
    // after inside one transaction: until the transaction ends, nothing else moves them.
    let batch: Vec<Notification> = (0..200).map(intent).collect();
    let mut tx = pool.begin().await.unwrap();
    let before = scans_of_notifications(&mut tx).await;
    let results = herald::enqueue_many(&mut *tx, &batch).await.unwrap();
    let after = scans_of_notifications(&mut tx).await;
    tx.commit().await.unwrap();
    let (seq_scans, index_scans) = (after.0 - before.0, after.1 - before.1);

    let duplicates = results.iter().filter(|r| !r.is_created()).count();
    assert_eq!(duplicates, 100, "the replays were recognised");
    assert_eq!(seq_scans, 0, "the batch read the whole table");
    assert!(index_scans > 0, "the existing keys were looked up by index");
}

/// (Sequential, index) scans of `herald.intents` (the table behind `herald.notifications` that
/// holds the history) counted by this session so far.
async fn scans_of_notifications(conn: &mut sqlx::PgConnection) -> (i64, i64) {
    sqlx::query_as(
        "select seq_scan, coalesce(idx_scan, 0) from pg_stat_xact_user_tables
         where relid = 'herald.intents'::regclass",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}
