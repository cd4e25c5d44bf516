//! SQL of the enqueue path: calls of `herald.enqueue(...)` and `herald.enqueue_many(jsonb)`.
//!
//! The library enqueues through the same SECURITY DEFINER functions as every other language
//! (migrations 0002 and 0003), so an application's role needs nothing but EXECUTE on them
//! (`herald_enqueue`): no right on any table, and no way past the validation. They validate
//! again, insert with `ON CONFLICT DO NOTHING`, decide duplicates and conflicts with the
//! fingerprint, and wake listening dispatchers at commit. Their refusals come back as SQLSTATE
//! `HR001` (invalid) and `HR002` (conflict), which [`crate::enqueue`] turns into
//! `EnqueueError`s.
//!
//! Every name in these statements is schema-qualified, so nothing on the caller's
//! `search_path` can stand in for what they call.

use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::notification::Validated;
use crate::pooling;

/// One result row of `herald.enqueue_many`.
#[derive(Debug, sqlx::FromRow)]
pub struct EnqueueRow {
    pub id: Uuid,
    /// `created` or `duplicate`.
    pub status: String,
    pub state: String,
}

/// What `herald._enqueue_or_refuse` decided about one notification.
#[derive(Debug, sqlx::FromRow)]
pub struct Decision {
    /// `created`, `duplicate`, `conflict` or `invalid`.
    pub status: String,
    /// The notification, or for a conflict the one holding the key.
    pub id: Option<Uuid>,
    pub state: Option<String>,
    /// For a refusal: the field, or what differs.
    pub field: Option<String>,
    pub message: Option<String>,
}

/// A call of `$function`, which takes the single enqueue's arguments and returns its decision
/// (`herald._enqueue_or_refuse` or its group-commit form).
macro_rules! single_call {
    ($function:literal) => {
        concat!(
            "
        select e.o_status as status, e.o_id as id, e.o_state as state,
               e.o_field as field, e.o_message as message
        from ",
            $function,
            "(
            $1::pg_catalog.text, $2::pg_catalog.text, $3::pg_catalog.text, $4::pg_catalog.text,
            $5::pg_catalog.text, $6::pg_catalog.uuid, $7::pg_catalog.jsonb,
            $8::pg_catalog.timestamptz, $9::pg_catalog.int4, $10::pg_catalog.int4,
            $11::pg_catalog.bool) as e"
        )
    };
}

/// Enqueues one validated notification. A refusal is returned, not raised, so that the
/// caller's transaction stays usable. With `wake`, a created row wakes listening dispatchers
/// when the transaction commits.
pub async fn enqueue_one(
    conn: &mut PgConnection,
    item: &Validated,
    wake: bool,
) -> Result<Decision, sqlx::Error> {
    const SQL: &str = single_call!("herald._enqueue_or_refuse");
    single(conn, SQL, item, wake).await
}

/// [`enqueue_one`] for a group commit of one (`herald._enqueue_one_in_group`): gives up after
/// a short wait on a key another transaction holds.
pub async fn enqueue_one_in_group(
    conn: &mut PgConnection,
    item: &Validated,
    wake: bool,
) -> Result<Decision, sqlx::Error> {
    const SQL: &str = single_call!("herald._enqueue_one_in_group");
    single(conn, SQL, item, wake).await
}

async fn single(
    conn: &mut PgConnection,
    sql: &'static str,
    item: &Validated,
    wake: bool,
) -> Result<Decision, sqlx::Error> {
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(sql)
            .bind(&item.key.tenant)
            .bind(&item.key.user_id)
            .bind(&item.key.type_)
            .bind(&item.key.business_id)
            .bind(item.email())
            .bind(item.endpoint_id)
            .bind(Json(&*item.payload))
            .bind(item.run_at)
            .bind(item.max_attempts)
            .bind(payload_limit(item))
            .bind(wake)
            .fetch_one(conn)
            .await
    })
    .await
}

/// Enqueues validated notifications with `herald.enqueue_many(jsonb)`: all or nothing, one
/// row per item in input order.
pub async fn enqueue_many(
    conn: &mut PgConnection,
    items: &[Validated],
) -> Result<Vec<EnqueueRow>, sqlx::Error> {
    enqueue_json(conn, &batch_of(items), batch_limit(items)).await
}

/// [`enqueue_many`] for a group commit (`herald._enqueue_group`): gives up after a short
/// wait on a key another transaction holds, and wakes listeners only with `wake`.
pub async fn enqueue_group(
    conn: &mut PgConnection,
    items: &[&Validated],
    wake: bool,
) -> Result<Vec<EnqueueRow>, sqlx::Error> {
    const SQL: &str = "
        select e.id, e.status, e.state
        from herald._enqueue_group($1::pg_catalog.jsonb, $2::pg_catalog.int4,
                                   $3::pg_catalog.bool) as e";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL)
            .bind(Json(batch_of(items.iter().copied())))
            .bind(batch_limit(items.iter().copied()))
            .bind(wake)
            .fetch_all(conn)
            .await
    })
    .await
}

fn batch_of<'a>(items: impl IntoIterator<Item = &'a Validated>) -> Vec<BatchItem<'a>> {
    items.into_iter().map(BatchItem::from).collect()
}

/// The batch's payload limit: its items share one.
fn batch_limit<'a>(items: impl IntoIterator<Item = &'a Validated>) -> i32 {
    items.into_iter().next().map_or(i32::MAX, payload_limit)
}

/// A payload limit past `i32::MAX` bytes is no limit PostgreSQL could reach (jsonb values are
/// at most 255 MB), so saturating keeps its meaning.
fn payload_limit(item: &Validated) -> i32 {
    i32::try_from(item.max_payload_bytes).unwrap_or(i32::MAX)
}

/// An item of `herald.enqueue_many`'s array. The payload is embedded as the text it was given
/// in, so its numbers reach jsonb exactly.
#[derive(Serialize)]
struct BatchItem<'a> {
    tenant: &'a str,
    user_id: &'a str,
    #[serde(rename = "type")]
    type_: &'a str,
    business_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<Uuid>,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_at: Option<String>,
    max_attempts: i32,
}

impl<'a> From<&'a Validated> for BatchItem<'a> {
    fn from(item: &'a Validated) -> Self {
        BatchItem {
            tenant: &item.key.tenant,
            user_id: &item.key.user_id,
            type_: &item.key.type_,
            business_id: &item.key.business_id,
            email: item.email(),
            webhook: item.endpoint_id,
            payload: &item.payload,
            run_at: item
                .run_at
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            max_attempts: item.max_attempts,
        }
    }
}

/// Enqueues a JSON array of `herald.enqueue_many` items (validated ones, or the HTTP API's
/// bodies as they are): the function validates each, all or nothing, one row per item in
/// input order.
pub async fn enqueue_json(
    conn: &mut PgConnection,
    items: &(impl Serialize + Sync),
    max_payload_bytes: i32,
) -> Result<Vec<EnqueueRow>, sqlx::Error> {
    const SQL: &str = "
        select e.id, e.status, e.state
        from herald.enqueue_many($1::pg_catalog.jsonb, $2::pg_catalog.int4) as e";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL)
            .bind(Json(items))
            .bind(max_payload_bytes)
            .fetch_all(conn)
            .await
    })
    .await
}
