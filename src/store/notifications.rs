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
///
/// The statement holds only the conditions of the filters given (each combination is its own
/// prepared statement, with its own plan), and helps the planner where the primary key alone
/// would scan the whole table for a filter that matches little:
/// - `pending` and `running` notifications are the queue's rows: the queue (small) drives.
/// - A user or business id without a tenant is looked up under each tenant in the key's index
///   (its leading column), the tenants found by a loose index scan: a probe per tenant.
pub async fn list(
    conn: &mut PgConnection,
    filter: &ListFilter,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    let sql = list_sql(filter);
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(sqlx::AssertSqlSafe(sql))
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

/// The statement of [`list`]: fixed fragments only, chosen by which filters are given; every
/// value is a bind parameter.
fn list_sql(filter: &ListFilter) -> String {
    const DISTINCT_TENANTS: &str = "
        with recursive tenants as (
            select min(tenant) as tenant from herald.intents
            union all
            select (select min(i.tenant) from herald.intents i where i.tenant > t.tenant)
            from tenants t where t.tenant is not null
        ) ";
    let mut sql = String::new();
    let skip_scan =
        filter.tenant.is_none() && (filter.user_id.is_some() || filter.business_id.is_some());
    if skip_scan {
        sql.push_str(DISTINCT_TENANTS);
    }
    sql.push_str(concat!(
        "select ",
        notification_columns!(),
        " from herald.notifications"
    ));
    // $1 … $7 are always bound (their types travel with them), used or not.
    let mut conditions = vec!["true"];
    if filter.state.is_some() {
        conditions.push("state = $1");
    }
    if matches!(filter.state, Some(State::Pending | State::Running)) {
        conditions.push("id in (select id from herald.queue)");
    }
    if filter.type_.is_some() {
        conditions.push("type = $2");
    }
    if filter.user_id.is_some() {
        conditions.push("user_id = $3");
    }
    if filter.tenant.is_some() {
        conditions.push("tenant = $4");
    }
    if filter.business_id.is_some() {
        conditions.push("business_id = $5");
    }
    if skip_scan {
        conditions.push("tenant = any(array(select tenant from tenants where tenant is not null))");
    }
    if filter.before.is_some() {
        conditions.push("id < $6");
    }
    sql.push_str(" where ");
    sql.push_str(&conditions.join(" and "));
    sql.push_str(" order by id desc limit $7");
    sql
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_adds_only_its_own_condition() {
        let all = list_sql(&ListFilter::default());
        assert!(
            all.ends_with("where true order by id desc limit $7"),
            "{all}"
        );
        let pending = list_sql(&ListFilter {
            state: Some(State::Pending),
            ..ListFilter::default()
        });
        assert!(pending.contains("state = $1 and id in (select id from herald.queue)"));
        let dead = list_sql(&ListFilter {
            state: Some(State::Dead),
            ..ListFilter::default()
        });
        assert!(!dead.contains("herald.queue"), "{dead}");
    }

    #[test]
    fn a_user_without_a_tenant_is_looked_up_under_each_tenant() {
        let user = list_sql(&ListFilter {
            user_id: Some("u".into()),
            ..ListFilter::default()
        });
        assert!(
            user.starts_with("\n        with recursive tenants"),
            "{user}"
        );
        assert!(user.contains("tenant = any(array(select tenant from tenants"));
        let with_tenant = list_sql(&ListFilter {
            user_id: Some("u".into()),
            tenant: Some("t".into()),
            ..ListFilter::default()
        });
        assert!(!with_tenant.contains("recursive"), "{with_tenant}");
        assert!(with_tenant.contains("user_id = $3 and tenant = $4"));
    }
}
