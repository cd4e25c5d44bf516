//! `GET /`: counts by state, deliveries and failures over the last hour (a bar per minute,
//! inline SVG), the oldest due notification and the open breakers.
//!
//! An unbound token sees [`crate::admin::stats::gather`], the answer of `herald stats`; a
//! tenant-bound token sees the same numbers of its own tenant only.

use std::sync::Arc;

use axum::extract::State as Shared;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;
use sqlx::PgConnection;

use super::display::{age, at};
use super::pages::database_failed;
use super::render::page;
use super::session::Viewer;
use crate::admin::stats;
use crate::api::State;
use crate::state::{Channel, State as NotificationState};
use crate::store::activity::{self, Minute};
use crate::store::admin::StateCount;
use crate::store::endpoints;

/// The chart's drawing area, in SVG user units.
const CHART_WIDTH: u32 = 720;
const CHART_HEIGHT: u32 = 100;
const BAR: u32 = CHART_WIDTH / 60;

#[derive(Debug, Serialize)]
struct StateTile {
    state: &'static str,
    total: i64,
    email: i64,
    webhook: i64,
}

#[derive(Debug, Serialize)]
struct Breaker {
    /// `smtp`, or an endpoint's id.
    destination: String,
    /// Whether `destination` is an endpoint (linked to its card on the endpoints page).
    endpoint: bool,
    opened_at: Option<String>,
    next_probe_at: Option<String>,
}

/// One bar: its delivered part on top of its failed part.
#[derive(Debug, Serialize)]
struct Bar {
    x: u32,
    width: u32,
    delivered_y: u32,
    delivered_height: u32,
    failed_y: u32,
    failed_height: u32,
    title: String,
}

#[derive(Debug, Serialize)]
struct Chart {
    width: u32,
    height: u32,
    bars: Vec<Bar>,
    peak: i64,
    first: String,
    last: String,
}

struct Numbers {
    tiles: Vec<StateTile>,
    oldest_due_age: Option<f64>,
    breakers: Vec<Breaker>,
}

pub async fn show(Shared(state): Shared<Arc<State>>, viewer: Viewer) -> Response {
    let mut conn = match state.pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return database_failed(Some(&viewer), &e),
    };
    let tenant = viewer.caller.tenant.clone();
    let numbers = match &tenant {
        None => everyone(&mut conn).await,
        Some(tenant) => one_tenant(&mut conn, tenant).await,
    };
    let minutes = activity::last_hour_by_minute(&mut conn, tenant.as_deref()).await;
    let (numbers, minutes) = match (numbers, minutes) {
        (Ok(n), Ok(m)) => (n, m),
        (Err(e), _) | (_, Err(e)) => return database_failed(Some(&viewer), &e),
    };
    let delivered: i64 = minutes.iter().map(|m| m.delivered).sum();
    let failed: i64 = minutes.iter().map(|m| m.failed).sum();
    let unknown: i64 = minutes.iter().map(|m| m.unknown).sum();
    page(
        StatusCode::OK,
        "overview.html",
        context! {
            viewer => Serde(viewer.view()),
            nav => "overview",
            tiles => Serde(&numbers.tiles),
            oldest_due => numbers.oldest_due_age.map(age),
            breakers => Serde(&numbers.breakers),
            chart => Serde(chart(&minutes)),
            delivered => delivered,
            failed => failed,
            unknown => unknown,
        },
    )
}

async fn everyone(conn: &mut PgConnection) -> Result<Numbers, sqlx::Error> {
    let stats = stats::gather(conn).await?;
    let tiles = NotificationState::ALL
        .iter()
        .map(|s| {
            let c = stats.counts.get(s.as_str());
            StateTile {
                state: s.as_str(),
                total: c.map_or(0, |c| c.total),
                email: c.map_or(0, |c| c.email),
                webhook: c.map_or(0, |c| c.webhook),
            }
        })
        .collect();
    let breakers = stats
        .open_breakers
        .into_iter()
        .map(|b| Breaker {
            endpoint: b.destination != "smtp",
            destination: b.destination,
            opened_at: b.opened_at.map(at),
            next_probe_at: b.next_probe_at.map(at),
        })
        .collect();
    Ok(Numbers {
        tiles,
        oldest_due_age: stats.oldest_due_age_seconds,
        breakers,
    })
}

async fn one_tenant(conn: &mut PgConnection, tenant: &str) -> Result<Numbers, sqlx::Error> {
    let counts = activity::tenant_counts(conn, tenant).await?;
    let oldest_due_age = activity::tenant_oldest_due_age(conn, tenant).await?;
    let breakers = endpoints::list(conn, Some(tenant))
        .await?
        .into_iter()
        .filter(|e| e.breaker != "closed")
        .map(|e| Breaker {
            destination: e.id.to_string(),
            endpoint: true,
            opened_at: e.breaker_opened_at.map(at),
            next_probe_at: e.next_probe_at.map(at),
        })
        .collect();
    Ok(Numbers {
        tiles: tiles_of(&counts),
        oldest_due_age,
        breakers,
    })
}

fn tiles_of(counts: &[StateCount]) -> Vec<StateTile> {
    NotificationState::ALL
        .iter()
        .map(|s| {
            let of = |channel: Channel| -> i64 {
                counts
                    .iter()
                    .filter(|c| c.state == *s && c.channel == channel)
                    .map(|c| c.count)
                    .sum()
            };
            let (email, webhook) = (of(Channel::Email), of(Channel::Webhook));
            StateTile {
                state: s.as_str(),
                total: email + webhook,
                email,
                webhook,
            }
        })
        .collect()
}

/// Bars scaled to the busiest minute (at least 1, so an idle hour draws no bars).
fn chart(minutes: &[Minute]) -> Chart {
    let peak = minutes
        .iter()
        .map(|m| m.delivered + m.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: i64| -> u32 {
        // n ≤ peak, so the height is at most CHART_HEIGHT; a non-zero count is at least 1 unit.
        let h = (n as f64 / peak as f64 * f64::from(CHART_HEIGHT)).round() as u32;
        if n > 0 { h.max(1) } else { 0 }
    };
    let bars = minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let failed_height = scale(m.failed);
            let delivered_height = scale(m.delivered).min(CHART_HEIGHT - failed_height);
            Bar {
                x: i as u32 * BAR,
                width: BAR - 2,
                failed_y: CHART_HEIGHT - failed_height,
                failed_height,
                delivered_y: CHART_HEIGHT - failed_height - delivered_height,
                delivered_height,
                title: format!(
                    "{}: {} delivered, {} failed",
                    m.minute.format("%H:%M"),
                    m.delivered,
                    m.failed
                ),
            }
        })
        .collect();
    Chart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        bars,
        peak,
        first: minutes
            .first()
            .map(|m| m.minute.format("%H:%M").to_string())
            .unwrap_or_default(),
        last: minutes
            .last()
            .map(|m| m.minute.format("%H:%M").to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn minute(i: i64, delivered: i64, failed: i64) -> Minute {
        Minute {
            minute: Utc.timestamp_opt(1_700_000_000 + i * 60, 0).unwrap(),
            delivered,
            failed,
            unknown: 0,
        }
    }

    #[test]
    fn bars_scale_to_the_busiest_minute_and_stay_inside_the_chart() {
        let minutes: Vec<Minute> = (0..60)
            .map(|i| match i {
                10 => minute(i, 30, 10),
                20 => minute(i, 1, 0),
                _ => minute(i, 0, 0),
            })
            .collect();
        let c = chart(&minutes);
        assert_eq!(c.peak, 40);
        assert_eq!(c.bars.len(), 60);
        let busiest = &c.bars[10];
        assert_eq!(
            busiest.delivered_height + busiest.failed_height,
            CHART_HEIGHT
        );
        assert_eq!(busiest.delivered_y, 0);
        assert_eq!(
            c.bars[20].delivered_height, 3,
            "1 of 40 is 2.5 units, rounded"
        );
        assert_eq!(c.bars[0].delivered_height + c.bars[0].failed_height, 0);
        assert!(c.bars.iter().all(|b| b.x + b.width <= CHART_WIDTH));
    }

    #[test]
    fn an_idle_hour_draws_nothing() {
        let minutes: Vec<Minute> = (0..60).map(|i| minute(i, 0, 0)).collect();
        let c = chart(&minutes);
        assert!(
            c.bars
                .iter()
                .all(|b| b.delivered_height == 0 && b.failed_height == 0)
        );
    }
}
