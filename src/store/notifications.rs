//! Reading notifications and their attempt logs, for the admin CLI and operators.

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::timestamp::Timestamp;
use crate::pooling;
use crate::state::{Channel, State};

/// A notification as the CLI and its JSON show it (DESIGN.md, "Notification JSON").
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Notification)]
pub struct NotificationRow {
    pub id: Uuid,
    pub tenant: String,
    pub user_id: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub type_: String,
    pub business_id: String,
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "webhook")]
    pub channel: Channel,
    pub destination: String,
    #[schema(value_type = Object)]
    pub payload: crate::payload::Payload,
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "pending")]
    pub state: State,
    pub attempts: i32,
    pub max_attempts: i32,
    // Read as `Timestamp`, not `DateTime<Utc>`: a row stored before migration 0004 (or by plain
    // SQL) may hold an infinity or a year chrono cannot represent (see `timestamp`).
    #[schema(value_type = String, format = DateTime)]
    pub run_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// The columns of [`NotificationRow`], as a literal so that `concat!` can build each query.
macro_rules! notification_columns {
    () => {
        "id, tenant, user_id, type, business_id, channel, destination, payload, state, \
         attempts, max_attempts, run_at, created_at, finished_at, last_error"
    };
}

/// One delivery attempt (DESIGN.md, `attempt_log`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Attempt)]
pub struct AttemptRow {
    pub attempt: i32,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub finished_at: Timestamp,
    pub outcome: String,
    pub status: Option<i32>,
    pub error: Option<String>,
}

/// Filters of `herald list`, `GET /v1/notifications` and the console; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<State>,
    pub type_: Option<String>,
    pub user_id: Option<String>,
    pub tenant: Option<String>,
    pub business_id: Option<String>,
    /// Only notifications older than this one (ids are time-ordered): the next page after it.
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Newest first. Ids are UUIDv7 (time-ordered), so the primary key serves the order and the
/// scan stops at `limit`; a page continues with `before` = the last id of the previous one.
pub async fn list(
    conn: &mut PgConnection,
    filter: &ListFilter,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "select ",
        notification_columns!(),
        " from herald.notifications
          where ($1::text is null or state = $1)
            and ($2::text is null or type = $2)
            and ($3::text is null or user_id = $3)
            and ($4::text is null or tenant = $4)
            and ($5::text is null or business_id = $5)
            and ($6::uuid is null or id < $6)
          order by id desc
          limit $7"
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL)
            .bind(filter.state.map(State::as_str))
            .bind(&filter.type_)
            .bind(&filter.user_id)
            .bind(&filter.tenant)
            .bind(&filter.business_id)
            .bind(filter.before)
            .bind(filter.limit)
            .fetch_all(conn)
            .await
    })
    .await
}

pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<NotificationRow>, sqlx::Error> {
    const SQL: &str = concat!(
        "select ",
        notification_columns!(),
        " from herald.notifications where id = $1"
    );
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(id).fetch_optional(conn).await
    })
    .await
}

/// The attempt log of one notification, oldest first.
pub async fn attempts(conn: &mut PgConnection, id: Uuid) -> Result<Vec<AttemptRow>, sqlx::Error> {
    const SQL: &str = "
        select attempt, started_at, finished_at, outcome, status, error
        from herald.attempts where notification_id = $1 order by attempt";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(id).fetch_all(conn).await
    })
    .await
}
