//! The numbers behind `herald stats`, `GET /v1/stats` and the console's overview: counts by
//! state and channel, the oldest due notification, the last hour, open breakers and the
//! endpoints with the most waiting.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgConnection;

use crate::state::{Channel, State};
use crate::store::admin as store;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub email: i64,
    pub webhook: i64,
    pub total: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LastHour {
    pub delivered: i64,
    pub failed: i64,
    pub unknown: i64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Every state, in [`State::ALL`]'s order of names, zero when none is in it.
    #[schema(value_type = BTreeMap<String, Counts>)]
    pub counts: BTreeMap<&'static str, Counts>,
    pub oldest_due_age_seconds: Option<f64>,
    pub last_hour: LastHour,
    pub open_breakers: Vec<store::OpenBreaker>,
    pub busiest_endpoints: Vec<store::Busiest>,
}

/// How many endpoints `busiest_endpoints` names.
const BUSIEST: i64 = 5;

pub async fn gather(conn: &mut PgConnection) -> Result<Stats, sqlx::Error> {
    let rows = store::counts(conn).await?;
    let recent = store::recent(conn).await?;
    let open_breakers = store::open_breakers(conn).await?;
    let busiest_endpoints = store::busiest_endpoints(conn, BUSIEST).await?;
    let mut counts: BTreeMap<&'static str, Counts> = State::ALL
        .iter()
        .map(|s| {
            (
                s.as_str(),
                Counts {
                    email: 0,
                    webhook: 0,
                    total: 0,
                },
            )
        })
        .collect();
    for row in rows {
        if let Some(c) = counts.get_mut(row.state.as_str()) {
            match row.channel {
                Channel::Email => c.email += row.count,
                Channel::Webhook => c.webhook += row.count,
            }
            c.total += row.count;
        }
    }
    Ok(Stats {
        counts,
        oldest_due_age_seconds: recent.oldest_due_age_seconds,
        last_hour: LastHour {
            delivered: recent.delivered,
            failed: recent.failed,
            unknown: recent.unknown,
            latency_p50_ms: recent.latency_p50_ms,
            latency_p99_ms: recent.latency_p99_ms,
        },
        open_breakers,
        busiest_endpoints,
    })
}
