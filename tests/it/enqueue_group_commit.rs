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

/// An application transaction that enqueued the key `held` and has not committed yet: any
/// other enqueue of that key waits for it.
async fn holding_the_held_key(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = pool.begin().await.unwrap();
    herald::enqueue(&mut *holder, &welcome("held".into()))
        .await
        .unwrap();
    holder
}

/// A backend of this database waits on a lock (an enqueue blocked by a key another transaction
/// holds).
const SOMEONE_WAITS_ON_A_LOCK: &str = "select exists (select 1 from pg_stat_activity
     where datname = current_database() and wait_event_type = 'Lock')";

#[sqlx::test(migrations = false)]
async fn a_group_gives_up_at_once_on_a_key_another_transaction_holds(pool: PgPool) {
    let pool = migrated(pool).await;
    let holder = holding_the_held_key(&pool).await;
    let items = json!([
        {"user_id": "user-1", "type": "welcome", "business_id": "free", "email": "ann@example.com"},
        {"user_id": "user-1", "type": "welcome", "business_id": "held", "email": "ann@example.com",
         "payload": {"n": 1}},
    ]);
    let error = sqlx::query("select * from herald._enqueue_group($1, 65536, false)")
        .bind(items)
        .fetch_all(&pool)
        .await
        .unwrap_err();
    let code = error.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("55P03"), "lock_timeout: {error}");
    holder.commit().await.unwrap();
    let free: i64 =
        sqlx::query_scalar("select count(*) from herald.intents where business_id = 'free'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(free, 0, "a group that gave up wrote nothing");
}

#[sqlx::test(migrations = false)]
async fn an_enqueue_waiting_on_a_held_key_holds_up_no_other(pool: PgPool) {
    let pool = migrated(pool).await;
    let holder = holding_the_held_key(&pool).await;
    let blocked = {
        let pool = pool.clone();
        tokio::spawn(async move { herald::enqueue(&pool, &welcome("held".into())).await })
    };
    crate::support::wait_for_sql(
        &pool,
        "the replay to wait on the key",
        SOMEONE_WAITS_ON_A_LOCK,
    )
    .await;
    // The holder itself enqueues on the pool while its key blocks the replay: with a leader
    // stuck behind the replay, this would wait for the holder, which waits for it.
    let unrelated = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        herald::enqueue(&pool, &welcome("unrelated".into())),
    )
    .await;
    assert!(
        matches!(unrelated, Ok(Ok(Enqueued::Created { .. }))),
        "{unrelated:?}"
    );
    holder.commit().await.unwrap();
    let replay = blocked.await.unwrap();
    assert!(
        matches!(replay, Ok(Enqueued::Duplicate { .. })),
        "{replay:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn callers_of_an_unanswering_server_each_wait_one_acquire_timeout(_pool: PgPool) {
    // A server that accepts connections and never says anything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = std::time::Duration::from_millis(500);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(timeout)
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/nowhere"))
        .unwrap();
    let started = std::time::Instant::now();
    let callers: Vec<_> = (0..10)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { herald::enqueue(&pool, &welcome(format!("b{i}"))).await })
        })
        .collect();
    for caller in callers {
        let result = caller.await.unwrap();
        assert!(
            matches!(result, Err(EnqueueError::Database(_))),
            "{result:?}"
        );
    }
    // One after another would take ten timeouts.
    assert!(
        started.elapsed() < timeout * 5,
        "the last caller failed after {:?}",
        started.elapsed()
    );
    silent.abort();
}

#[sqlx::test(migrations = false)]
async fn a_leader_gone_with_its_runtime_leaves_the_pool_working(pool: PgPool) {
    let pool = migrated(pool).await;
    let holder = holding_the_held_key(&pool).await;
    let other = pool.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let held = welcome("held".into());
            let replays = (0..4).map(|_| herald::enqueue(&other, &held));
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(30),
                futures_util::future::join_all(replays),
            )
            .await;
        });
        drop(runtime);
    })
    .join()
    .unwrap();
    holder.commit().await.unwrap();
    let after = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        herald::enqueue(&pool, &welcome("after".into())),
    )
    .await;
    assert!(
        matches!(after, Ok(Ok(Enqueued::Created { .. }))),
        "{after:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn an_enqueue_outside_a_runtime_leaves_the_pool_working(pool: PgPool) {
    let pool = migrated(pool).await;
    let other = pool.clone();
    // Polled once without a runtime: whatever that call does, it starts no leader that
    // nobody runs.
    let _ = std::thread::spawn(move || {
        let notification = welcome("outside".into());
        let mut call = herald::enqueue(&other, &notification);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = call.as_mut().poll(&mut cx);
    })
    .join();
    let after = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        herald::enqueue(&pool, &welcome("after".into())),
    )
    .await;
    assert!(
        matches!(after, Ok(Ok(Enqueued::Created { .. }))),
        "{after:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn a_pool_whose_options_changed_keeps_its_notifications(pool: PgPool) {
    let pool = migrated(pool).await;
    let other_db = format!("herald_group_other_{}", std::process::id());
    let admin = &pool;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists {other_db} with (force)"
    )))
    .execute(admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {other_db}")))
        .execute(admin)
        .await
        .unwrap();
    let b_options: sqlx::postgres::PgConnectOptions =
        crate::support::url_for(&other_db).parse().unwrap();
    {
        let b = PgPool::connect_with(b_options.clone()).await.unwrap();
        herald::migrate(&b).await.unwrap();
        b.close().await;
    }
    // A leader of pool A busy on a held key while A's options are replaced (credentials
    // rotated) and pool B is made: B's options may land where A's old ones were.
    let holder = holding_the_held_key(&pool).await;
    let replays: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { herald::enqueue(&pool, &welcome("held".into())).await })
        })
        .collect();
    pool.set_connect_options((*pool.connect_options()).clone());
    let b = sqlx::postgres::PgPoolOptions::new().connect_lazy_with(b_options);
    let for_b = herald::enqueue(&b, &welcome("for-b".into())).await;
    holder.commit().await.unwrap();
    for replay in replays {
        replay.await.unwrap().unwrap();
    }
    let count = |p: PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from herald.intents where business_id = 'for-b'",
        )
        .fetch_one(&p)
        .await
        .unwrap()
    };
    let (in_a, in_b) = (count(pool.clone()).await, count(b.clone()).await);
    b.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists {other_db} with (force)"
    )))
    .execute(admin)
    .await
    .unwrap();
    assert_eq!(
        (in_a, in_b),
        (0, 1),
        "B's notification ({for_b:?}) went to its own database"
    );
}
