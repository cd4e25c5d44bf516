//! Operational events: when `alerts.endpoint` names one of herald's webhook endpoints, breaker
//! transitions, disabled endpoints and dead notifications become notifications to it, enqueued
//! in the transaction that made them happen, so they are sent once and never lost.
//!
//! Invariants:
//! - Each event's key is fixed by what happened: tenant of the alerts endpoint, user `herald`,
//!   type the event name, business id `<destination>:<transition unix µs>` or the dead
//!   notification's id. A statement retried after a lost answer enqueues duplicates, which the
//!   key turns into nothing.
//! - The alerts endpoint's own notifications and breaker raise no event (no loops).
//! - Payloads carry ids, states and times, never an endpoint's URL (its query may hold a token)
//!   or secret.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::notification::Notification;
use crate::pooling;
use crate::store::dispatch::BreakerChange;

/// `herald.endpoint.breaker_opened`: a closed breaker opened.
pub const BREAKER_OPENED: &str = "herald.endpoint.breaker_opened";
/// `herald.endpoint.recovered`: an open or half-open breaker closed.
pub const RECOVERED: &str = "herald.endpoint.recovered";
/// `herald.endpoint.disabled`: an endpoint was disabled (its breaker stayed open too long).
pub const DISABLED: &str = "herald.endpoint.disabled";
/// `herald.notification.dead`: a notification went dead.
pub const NOTIFICATION_DEAD: &str = "herald.notification.dead";

/// Where events go: the alerts endpoint and its tenant.
#[derive(Debug, Clone)]
pub struct AlertsTarget {
    pub endpoint_id: Uuid,
    pub tenant: String,
}

/// The event a breaker change raises, if any (a half-open breaker opening again is the same
/// outage, not news).
pub fn breaker_event(target: &AlertsTarget, change: &BreakerChange) -> Option<Notification> {
    if change.endpoint_id == Some(target.endpoint_id) {
        return None;
    }
    let event = match (change.from.as_str(), change.to.as_str()) {
        ("closed", "open") => BREAKER_OPENED,
        (_, "closed") => RECOVERED,
        _ => return None,
    };
    let payload = json!({
        "destination": change.destination,
        "endpoint_id": change.endpoint_id,
        "tenant": change.tenant,
        "breaker": change.to,
        "consecutive_failures": change.consecutive_failures,
        "opened_at": change.opened_at,
        "next_probe_at": change.next_probe_at,
        "at": change.at,
    });
    Some(event_to(
        target,
        event,
        &destination_moment(&change.destination, change.at),
        payload,
    ))
}

/// The event of an endpoint disabled at `at` for `reason`.
pub fn disabled_event(
    target: &AlertsTarget,
    endpoint_id: Uuid,
    tenant: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Option<Notification> {
    if endpoint_id == target.endpoint_id {
        return None;
    }
    let payload = json!({
        "destination": endpoint_id.to_string(),
        "endpoint_id": endpoint_id,
        "tenant": tenant,
        "reason": reason,
        "at": at,
    });
    Some(event_to(
        target,
        DISABLED,
        &destination_moment(&endpoint_id.to_string(), at),
        payload,
    ))
}

/// A dead notification as its event describes it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadNotification {
    pub id: Uuid,
    pub tenant: String,
    pub user_id: String,
    #[sqlx(rename = "type")]
    pub type_: String,
    pub business_id: String,
    pub channel: String,
    pub destination: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The event of a notification gone dead, unless it was one of the alerts endpoint's own.
pub fn dead_event(target: &AlertsTarget, dead: &DeadNotification) -> Option<Notification> {
    if dead.channel == "webhook"
        && dead
            .destination
            .eq_ignore_ascii_case(&target.endpoint_id.to_string())
    {
        return None;
    }
    let payload = json!({
        "id": dead.id,
        "tenant": dead.tenant,
        "user_id": dead.user_id,
        "type": dead.type_,
        "business_id": dead.business_id,
        "channel": dead.channel,
        "destination": dead.destination,
        "attempts": dead.attempts,
        "last_error": dead.last_error,
        "finished_at": dead.finished_at,
    });
    Some(event_to(
        target,
        NOTIFICATION_DEAD,
        &dead.id.to_string(),
        payload,
    ))
}

/// `<destination>:<unix µs>`: one transition of one destination.
fn destination_moment(destination: &str, at: DateTime<Utc>) -> String {
    format!("{destination}:{}", at.timestamp_micros())
}

fn event_to(target: &AlertsTarget, event: &str, business_id: &str, payload: Value) -> Notification {
    Notification::webhook("herald", event, business_id, target.endpoint_id)
        .tenant(&target.tenant)
        .payload(payload)
}

/// The events of the dead notifications among `ids` (none for the alerts endpoint's own).
pub async fn dead_events(
    conn: &mut PgConnection,
    target: &AlertsTarget,
    ids: &[Uuid],
) -> Result<Vec<Notification>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(dead_notifications(conn, ids)
        .await?
        .iter()
        .filter_map(|n| dead_event(target, n))
        .collect())
}

/// The dead notifications among `ids`, as their events describe them.
async fn dead_notifications(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<DeadNotification>, sqlx::Error> {
    const SQL: &str = "
        select id, tenant, user_id, type, business_id, channel, destination, attempts,
               last_error, finished_at
        from herald.intents where id = any($1) and state = 'dead'";
    pooling::in_transaction(conn, async |conn| {
        pooling::query_as(SQL).bind(ids).fetch_all(conn).await
    })
    .await
}

/// The alerts endpoint's tenant, `None` when it does not exist.
pub async fn target(
    conn: &mut PgConnection,
    endpoint_id: Uuid,
) -> Result<Option<AlertsTarget>, sqlx::Error> {
    const SQL: &str = "select tenant from herald.webhook_endpoints where id = $1";
    let tenant: Option<String> = pooling::in_transaction(conn, async |conn| {
        pooling::query_scalar(SQL)
            .bind(endpoint_id)
            .fetch_optional(conn)
            .await
    })
    .await?;
    Ok(tenant.map(|tenant| AlertsTarget {
        endpoint_id,
        tenant,
    }))
}

/// Enqueues `events` on `conn` (the caller's transaction), one at a time: a refusal (an alerts
/// endpoint that was disabled or removed; a notification that died again after a manual retry,
/// whose event key is taken) drops that event alone, with a log line, and leaves the
/// transaction and the outcomes it records intact.
pub async fn enqueue(conn: &mut PgConnection, events: &[Notification]) -> Result<(), sqlx::Error> {
    for event in events {
        match crate::enqueue(&mut *conn, event).await {
            Ok(_) => {}
            Err(crate::EnqueueError::Database(e)) => return Err(e),
            Err(refused) => {
                tracing::info!(event = %event.key().type_, error = %refused, "operational event not enqueued");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> AlertsTarget {
        AlertsTarget {
            endpoint_id: Uuid::from_u128(1),
            tenant: "ops".into(),
        }
    }

    fn change(destination: &str, endpoint: Option<Uuid>, from: &str, to: &str) -> BreakerChange {
        BreakerChange {
            destination: destination.into(),
            endpoint_id: endpoint,
            tenant: Some("acme".into()),
            from: from.into(),
            to: to.into(),
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            consecutive_failures: 5,
            opened_at: None,
            next_probe_at: None,
        }
    }

    #[test]
    fn opening_and_recovery_raise_keyed_events() {
        let id = Uuid::from_u128(7);
        let opened = breaker_event(
            &target(),
            &change(&id.to_string(), Some(id), "closed", "open"),
        )
        .unwrap();
        assert_eq!(opened.key().type_, BREAKER_OPENED);
        assert_eq!(opened.key().tenant, "ops");
        assert_eq!(opened.key().user_id, "herald");
        assert_eq!(opened.key().business_id, format!("{id}:1700000000123456"));
        let back = breaker_event(&target(), &change("smtp", None, "half_open", "closed")).unwrap();
        assert_eq!(back.key().type_, RECOVERED);
        assert_eq!(back.key().business_id, "smtp:1700000000123456");
    }

    #[test]
    fn a_probe_failing_again_is_no_news() {
        assert!(breaker_event(&target(), &change("smtp", None, "half_open", "open")).is_none());
        assert!(breaker_event(&target(), &change("smtp", None, "open", "half_open")).is_none());
    }

    #[test]
    fn the_alerts_endpoint_raises_nothing_about_itself() {
        let own = target().endpoint_id;
        assert!(
            breaker_event(
                &target(),
                &change(&own.to_string(), Some(own), "closed", "open")
            )
            .is_none()
        );
        assert!(disabled_event(&target(), own, "ops", "breaker open", Utc::now()).is_none());
        let dead = DeadNotification {
            id: Uuid::from_u128(9),
            tenant: "ops".into(),
            user_id: "herald".into(),
            type_: BREAKER_OPENED.into(),
            business_id: "x".into(),
            channel: "webhook".into(),
            destination: own.to_string().to_uppercase(),
            attempts: 8,
            last_error: Some("HTTP 503".into()),
            finished_at: None,
        };
        assert!(dead_event(&target(), &dead).is_none());
        let other = DeadNotification {
            destination: "ann@example.com".into(),
            channel: "email".into(),
            ..dead
        };
        let event = dead_event(&target(), &other).unwrap();
        assert_eq!(event.key().business_id, other.id.to_string());
        assert_eq!(event.key().type_, NOTIFICATION_DEAD);
    }
}
