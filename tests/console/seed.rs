//! What the console's tests look at: notifications in every state, attempts in the last hour,
//! endpoints, each made as herald makes them (the library's enqueue, the schema's functions)
//! or, for times the tests cannot wait for, with the shared test helpers.

use herald::Notification;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::db::{At, finish};

/// Enqueues an email notification; its id.
pub async fn email(pool: &PgPool, tenant: &str, user: &str, type_: &str, key: &str) -> Uuid {
    let n = Notification::email(user, type_, key, format!("{user}@example.com"))
        .tenant(tenant)
        .payload(json!({"order": key, "total": "42.00", "items": [{"sku": "A-1", "qty": 2}]}));
    herald::enqueue(pool, &n).await.unwrap().id()
}

/// Enqueues an email notification and finishes it in `state` (`delivered`, `dead`, …).
pub async fn finished(pool: &PgPool, tenant: &str, key: &str, state: &str) -> Uuid {
    let id = email(pool, tenant, "ann", "order_shipped", key).await;
    finish(pool, id, state, At::Now).await;
    id
}

/// An attempt of notification `id` that finished `minutes_ago`, as the daemon logs one.
pub async fn attempt(pool: &PgPool, id: Uuid, number: i32, outcome: &str, minutes_ago: i32) {
    sqlx::query(
        "insert into herald.attempts (notification_id, attempt, started_at, finished_at, outcome, status, error)
         values ($1, $2, now() - make_interval(mins => $3) - interval '80 milliseconds',
                 now() - make_interval(mins => $3), $4,
                 case when $4 = 'delivered' then 250 else 550 end,
                 case when $4 = 'failed' then '550 mailbox unavailable' end)",
    )
    .bind(id)
    .bind(number)
    .bind(minutes_ago)
    .bind(outcome)
    .execute(pool)
    .await
    .unwrap();
}

pub async fn state_of(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("select state from herald.notifications where id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

pub async fn endpoint_enabled(pool: &PgPool, id: Uuid) -> (bool, Option<String>) {
    sqlx::query_as("select enabled, disabled_reason from herald.webhook_endpoints where id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}
