//! One enqueue at a time: duplicates, conflicts, transactions, endpoints, the wake-up.

use std::time::Duration;

use herald::{EnqueueError, Enqueued, Notification, State};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::support::{At, Rows, count_notifications, disable_endpoint, endpoint, finish, migrated};

fn shipped() -> Notification {
    Notification::email("user-42", "order_shipped", "order-1001", "ann@example.com")
        .payload(json!({"order": "1001", "items": [{"sku": "a", "qty": 1}]}))
}

#[sqlx::test(migrations = false)]
async fn a_replay_is_a_duplicate_with_the_same_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let first = herald::enqueue(&pool, &shipped()).await.unwrap();
    assert!(
        matches!(
            first,
            Enqueued::Created {
                state: State::Pending,
                ..
            }
        ),
        "{first:?}"
    );
    assert_eq!(first.id().get_version_num(), 7, "ids are UUIDv7");
    for _ in 0..3 {
        let again = herald::enqueue(&pool, &shipped()).await.unwrap();
        assert!(
            matches!(
                again,
                Enqueued::Duplicate {
                    state: State::Pending,
                    ..
                }
            ),
            "{again:?}"
        );
        assert_eq!(again.id(), first.id());
    }
    assert_eq!(count_notifications(&pool).await, 1);
}

#[sqlx::test(migrations = false)]
async fn payload_key_order_does_not_matter(pool: PgPool) {
    let pool = migrated(pool).await;
    let a: serde_json::Value = serde_json::from_str(r#"{"a": 1, "b": {"y": 2, "x": 3}}"#).unwrap();
    let b: serde_json::Value = serde_json::from_str(r#"{"b": {"x": 3, "y": 2}, "a": 1}"#).unwrap();
    let n = |p| Notification::email("u", "t", "b", "ann@example.com").payload(p);
    let first = herald::enqueue(&pool, &n(a)).await.unwrap();
    let second = herald::enqueue(&pool, &n(b)).await.unwrap();
    assert!(matches!(second, Enqueued::Duplicate { .. }), "{second:?}");
    assert_eq!(second.id(), first.id());
}

#[sqlx::test(migrations = false)]
async fn a_different_intent_under_the_same_key_conflicts_and_changes_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let hook = endpoint(&pool, "default").await;
    let original = herald::enqueue(&pool, &shipped()).await.unwrap();
    let before: (serde_json::Value, String, String) =
        sqlx::query_as("select payload, destination, channel from herald.notifications")
            .fetch_one(&pool)
            .await
            .unwrap();
    let variants = [
        (shipped().payload(json!({"order": "9999"})), "payload"),
        (
            Notification::email("user-42", "order_shipped", "order-1001", "bob@example.com")
                .payload(json!({"order": "1001", "items": [{"sku": "a", "qty": 1}]})),
            "destination",
        ),
        (
            Notification::webhook("user-42", "order_shipped", "order-1001", hook)
                .payload(json!({"order": "1001", "items": [{"sku": "a", "qty": 1}]})),
            "channel",
        ),
    ];
    for (variant, what) in variants {
        match herald::enqueue(&pool, &variant).await {
            Err(EnqueueError::Conflict {
                existing_id,
                differs,
                ref key,
            }) => {
                assert_eq!(existing_id, original.id());
                assert_eq!(differs, what);
                assert_eq!(key.business_id, "order-1001");
            }
            other => panic!("expected a conflict on {what}, got {other:?}"),
        }
    }
    let after: (serde_json::Value, String, String) =
        sqlx::query_as("select payload, destination, channel from herald.notifications")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(before, after, "the existing notification is unchanged");
    assert_eq!(count_notifications(&pool).await, 1);
}

#[sqlx::test(migrations = false)]
async fn conflict_message_names_the_existing_id(pool: PgPool) {
    let pool = migrated(pool).await;
    let original = herald::enqueue(&pool, &shipped()).await.unwrap();
    let err = herald::enqueue(&pool, &shipped().payload(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: key (tenant \"default\", user_id \"user-42\", type \"order_shipped\", business_id \"order-1001\") is held by notification {} with a different payload",
            original.id()
        )
    );
}

#[sqlx::test(migrations = false)]
async fn the_key_includes_every_part(pool: PgPool) {
    let pool = migrated(pool).await;
    let base = || Notification::email("u", "t", "b", "ann@example.com");
    let all = [
        base(),
        base().tenant("acme"),
        Notification::email("u2", "t", "b", "ann@example.com"),
        Notification::email("u", "t2", "b", "ann@example.com"),
        Notification::email("u", "t", "b2", "ann@example.com"),
    ];
    for n in &all {
        assert!(herald::enqueue(&pool, n).await.unwrap().is_created());
    }
    assert_eq!(count_notifications(&pool).await, 5);
}

#[sqlx::test(migrations = false)]
async fn enqueue_joins_the_callers_transaction(pool: PgPool) {
    let pool = migrated(pool).await;
    sqlx::query("create table orders (id text primary key)")
        .execute(&pool)
        .await
        .unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("insert into orders values ('order-1001')")
        .execute(&mut *tx)
        .await
        .unwrap();
    herald::enqueue(&mut *tx, &shipped()).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        count_notifications(&pool).await,
        0,
        "rolled back: no notification"
    );

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("insert into orders values ('order-1001')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let out = herald::enqueue(&mut *tx, &shipped()).await.unwrap();
    // A conflict inside the transaction writes nothing and leaves the transaction usable.
    let conflict = herald::enqueue(&mut *tx, &shipped().payload(json!({}))).await;
    assert!(
        matches!(conflict, Err(EnqueueError::Conflict { .. })),
        "{conflict:?}"
    );
    tx.commit().await.unwrap();
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("select id from herald.notifications")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(ids, [out.id()], "committed: exactly one row");
    let orders: i64 = sqlx::query_scalar("select count(*) from orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, 1);
}

#[sqlx::test(migrations = false)]
async fn a_duplicate_reports_the_existing_state(pool: PgPool) {
    let pool = migrated(pool).await;
    let first = herald::enqueue(&pool, &shipped()).await.unwrap();
    finish(&pool, Rows::All, "delivered", At::Now).await;
    let again = herald::enqueue(&pool, &shipped()).await.unwrap();
    assert_eq!(again.id(), first.id());
    assert!(
        matches!(
            again,
            Enqueued::Duplicate {
                state: State::Delivered,
                ..
            }
        ),
        "{again:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn enqueue_stores_what_it_was_given(pool: PgPool) {
    let pool = migrated(pool).await;
    let run_at = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
        .unwrap()
        .to_utc();
    let n = shipped().tenant("acme").run_at(run_at).max_attempts(3);
    let id = herald::enqueue(&pool, &n).await.unwrap().id();
    let row = herald::store::notifications::get(&mut pool.acquire().await.unwrap(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.tenant, "acme");
    assert_eq!(row.user_id, "user-42");
    assert_eq!(row.type_, "order_shipped");
    assert_eq!(row.destination, "ann@example.com");
    assert_eq!(
        row.payload.to_value().unwrap(),
        json!({"order": "1001", "items": [{"sku": "a", "qty": 1}]})
    );
    assert_eq!(row.state, State::Pending);
    assert_eq!((row.attempts, row.max_attempts), (0, 3));
    assert_eq!(row.run_at.finite(), Some(run_at));
    assert_eq!(row.finished_at, None);
}

#[sqlx::test(migrations = false)]
async fn webhook_endpoints_must_exist_be_enabled_and_belong_to_the_tenant(pool: PgPool) {
    let pool = migrated(pool).await;
    let acme_hook = endpoint(&pool, "acme").await;
    let hook = |tenant: &str, id| Notification::webhook("u", "t", "b", id).tenant(tenant);

    let unknown = uuid::Uuid::now_v7();
    let err = herald::enqueue(&pool, &hook("acme", unknown))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid endpoint: webhook endpoint {unknown} does not exist for tenant \"acme\"")
    );
    let err = herald::enqueue(&pool, &hook("other", acme_hook))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EnqueueError::Invalid {
                field: "endpoint",
                ..
            }
        ),
        "{err:?}"
    );

    let created = herald::enqueue(&pool, &hook("acme", acme_hook))
        .await
        .unwrap();
    assert!(created.is_created());

    disable_endpoint(&pool, acme_hook, "gone: receiver answered 410").await;
    // A replay of an accepted notification is still a harmless duplicate...
    let replay = herald::enqueue(&pool, &hook("acme", acme_hook))
        .await
        .unwrap();
    assert_eq!(replay.id(), created.id());
    // ...but nothing new may target a disabled endpoint.
    let err = herald::enqueue(
        &pool,
        &Notification::webhook("u", "t", "b2", acme_hook).tenant("acme"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid endpoint: webhook endpoint {acme_hook} is disabled: gone: receiver answered 410"
        )
    );
    assert_eq!(count_notifications(&pool).await, 1);
}

#[sqlx::test(migrations = false)]
async fn a_created_notification_wakes_listeners_on_commit(pool: PgPool) {
    let pool = migrated(pool).await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(herald::wake::CHANNEL).await.unwrap();
    // Enqueues are debounced per process (and tests share this process), so keep creating
    // notifications until one wakes the listener; one must within a few windows.
    for i in 0..50 {
        let mut tx = pool.begin().await.unwrap();
        let n = Notification::email("u", "t", format!("b{i}"), "ann@example.com");
        herald::enqueue(&mut *tx, &n).await.unwrap();
        // Nothing arrives before the commit.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), listener.recv())
                .await
                .is_err(),
            "NOTIFY must be delivered at commit, not before"
        );
        tx.commit().await.unwrap();
        if let Ok(woke) = tokio::time::timeout(herald::wake::DEBOUNCE * 2, listener.recv()).await {
            assert_eq!(woke.unwrap().channel(), herald::wake::CHANNEL);
            return;
        }
    }
    panic!("no enqueue woke the listener");
}
