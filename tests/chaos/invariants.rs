//! The invariants every scenario must end with, checked against the database and against what
//! the receiver saw. Each broken invariant becomes one line of `Verdict::violations`; nothing
//! here panics, so a run reports every problem of every scenario at once.
//!
//! - None lost: one row per intent, with the intent's own payload, ending `delivered` — or
//!   `dead` only where the receiver refused every one of its attempts.
//! - A `delivered` row was accepted by the receiver at least once; nothing else is `delivered`.
//! - The receiver saw exactly the notification ids as delivery ids (`webhook-id`, `Message-ID`):
//!   one distinct id per intent. Every signature verified.
//! - Nothing is left `running`.
//! - No row changed under a stale lease: each claim leaves exactly one attempt row (its own
//!   outcome, or `unknown` when its lease was reclaimed), so the attempt count equals the row's
//!   `attempts`, every attempt carries a different lease token, and a delivered row has exactly
//!   one `delivered` attempt, its last. A stale worker writing after its lease was reclaimed
//!   would leave a second row for one token, or a `delivered` that is not last.
//! - The application was never told "conflict" or "invalid" for a replay of its own intent,
//!   and "created" at most once per intent.
//! - A request for an id the receiver had already accepted (a duplicate send) happens only
//!   after a crash, and no more often than the work a crash can lose; a repeat after an
//!   ambiguous outcome (hang-up, late answer) is expected, and both are counted.

use std::collections::{HashMap, HashSet};

use herald::Notification;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::Tally;

/// One request (or SMTP message) as the receiving side saw it.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// The delivery id it carried.
    pub id: String,
    /// The receiver acted on it (accepted it, or read it whole and gave no usable answer).
    pub processed: bool,
    /// The receiver answered success in time: the sender knows.
    pub accepted: bool,
    pub signature_valid: bool,
}

/// What a scenario's chaos could legitimately cost: duplicate sends after an acceptance.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub duplicates_after_acceptance: usize,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub rows: usize,
    pub delivered: usize,
    pub dead: usize,
    pub lost: usize,
    pub distinct_ids: usize,
    pub raw_sends: usize,
    /// Sends of an id the receiver had already processed.
    pub duplicate_sends: usize,
    /// Of those, sends after the receiver had accepted the id (only crashes explain them).
    pub duplicates_after_acceptance: usize,
    pub violations: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    tenant: String,
    user_id: String,
    #[sqlx(rename = "type")]
    type_: String,
    business_id: String,
    payload: Value,
    state: String,
    attempts: i32,
    max_attempts: i32,
    attempt_rows: i64,
    distinct_tokens: i64,
    delivered_attempts: i64,
    delivered_is_last: bool,
}

const ROWS: &str = "
    select n.id, n.tenant, n.user_id, n.type, n.business_id, n.payload, n.state, n.attempts,
           n.max_attempts,
           count(a.attempt) as attempt_rows,
           count(distinct a.lease_token) as distinct_tokens,
           count(a.attempt) filter (where a.outcome = 'delivered') as delivered_attempts,
           coalesce(max(a.attempt) filter (where a.outcome = 'delivered') = max(a.attempt), false)
               as delivered_is_last
    from herald.notifications n
    left join herald.attempts a on a.notification_id = n.id
    group by n.id";

pub async fn check(
    pool: &PgPool,
    intents: &[Notification],
    sightings: &[Sighting],
    tally: &Tally,
    replays: u64,
    allowance: Allowance,
) -> Verdict {
    let mut verdict = Verdict::default();
    let v = &mut verdict.violations;
    let rows: Vec<Row> = match sqlx::query_as(ROWS).fetch_all(pool).await {
        Ok(rows) => rows,
        Err(e) => {
            v.push(format!("cannot read the final state: {e}"));
            return verdict;
        }
    };
    verdict.rows = rows.len();

    // One row per intent, holding the intent's own payload.
    let mut by_key: HashMap<(String, String, String, String), &Row> = HashMap::new();
    for row in &rows {
        let key = (
            row.tenant.clone(),
            row.user_id.clone(),
            row.type_.clone(),
            row.business_id.clone(),
        );
        if by_key.insert(key.clone(), row).is_some() {
            v.push(format!("two rows hold the key {key:?}"));
        }
    }
    if rows.len() != intents.len() {
        v.push(format!("{} rows for {} intents", rows.len(), intents.len()));
    }

    let mut seen: HashMap<&str, Vec<&Sighting>> = HashMap::new();
    for s in sightings {
        seen.entry(s.id.as_str()).or_default().push(s);
    }

    for intent in intents {
        let key = intent.key();
        let wanted = (key.tenant, key.user_id, key.type_, key.business_id);
        let Some(row) = by_key.get(&wanted) else {
            verdict.lost += 1;
            v.push(format!("intent {wanted:?} has no row"));
            continue;
        };
        let id = row.id.to_string();
        let sightings = seen.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let accepted = sightings.iter().any(|s| s.accepted);
        if row.payload != intent_payload(intent) {
            v.push(format!("{id}: payload {} is not the intent's", row.payload));
        }
        match row.state.as_str() {
            "delivered" if accepted => verdict.delivered += 1,
            "delivered" => {
                verdict.lost += 1;
                v.push(format!(
                    "{id} is delivered but the receiver never accepted it"
                ));
            }
            "dead" if !accepted && row.attempts == row.max_attempts => verdict.dead += 1,
            other => {
                verdict.lost += 1;
                v.push(format!(
                    "{id} ended {other} after {} of {} attempts (accepted by the receiver: {accepted})",
                    row.attempts, row.max_attempts
                ));
            }
        }
        check_attempt_log(row, &id, v);
    }

    // The receiver saw exactly the notification ids.
    let row_ids: HashSet<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let seen_ids: HashSet<String> = seen.keys().map(|id| (*id).to_owned()).collect();
    verdict.distinct_ids = seen_ids.len();
    verdict.raw_sends = sightings.len();
    for stray in seen_ids.difference(&row_ids) {
        v.push(format!(
            "the receiver saw delivery id {stray:?}, which is no notification"
        ));
    }
    let unseen = row_ids.difference(&seen_ids).count();
    if unseen > 0 {
        v.push(format!("{unseen} notifications never reached the receiver"));
    }
    let forged = sightings.iter().filter(|s| !s.signature_valid).count();
    if forged > 0 {
        v.push(format!(
            "{forged} requests carried a signature that does not verify"
        ));
    }

    // Duplicate sends, walking each id's sightings in the order the receiver read them.
    for sightings in seen.values() {
        let mut processed = false;
        let mut accepted = false;
        for s in sightings {
            if processed {
                verdict.duplicate_sends += 1;
            }
            if accepted {
                verdict.duplicates_after_acceptance += 1;
            }
            processed |= s.processed;
            accepted |= s.accepted;
        }
    }
    if verdict.duplicates_after_acceptance > allowance.duplicates_after_acceptance {
        v.push(format!(
            "{} sends of ids the receiver had already accepted; the chaos explains at most {}",
            verdict.duplicates_after_acceptance, allowance.duplicates_after_acceptance
        ));
    }

    // What the application was told.
    let created = Tally::get(&tally.created);
    let duplicate = Tally::get(&tally.duplicate);
    for (what, count) in [
        ("conflict", Tally::get(&tally.conflict)),
        ("invalid", Tally::get(&tally.invalid)),
    ] {
        if count > 0 {
            v.push(format!(
                "{count} replays of an unchanged intent were answered {what}"
            ));
        }
    }
    if created > intents.len() as u64 {
        v.push(format!(
            "{created} enqueues answered created for {} intents",
            intents.len()
        ));
    }
    if created + duplicate != replays {
        v.push(format!(
            "{replays} enqueues, but {created} created + {duplicate} duplicate answers"
        ));
    }
    verdict
}

/// The attempt log of one notification says no row changed under a stale lease.
fn check_attempt_log(row: &Row, id: &str, v: &mut Vec<String>) {
    if row.attempt_rows != i64::from(row.attempts) {
        v.push(format!(
            "{id}: {} attempt rows for {} claims",
            row.attempt_rows, row.attempts
        ));
    }
    if row.distinct_tokens != row.attempt_rows {
        v.push(format!(
            "{id}: {} attempt rows under {} lease tokens",
            row.attempt_rows, row.distinct_tokens
        ));
    }
    let delivered = row.state == "delivered";
    if delivered && (row.delivered_attempts != 1 || !row.delivered_is_last) {
        v.push(format!(
            "{id}: delivered with {} delivered attempts (last: {})",
            row.delivered_attempts, row.delivered_is_last
        ));
    }
    if !delivered && row.delivered_attempts > 0 {
        v.push(format!("{id}: {} but an attempt was delivered", row.state));
    }
}

/// The payload an intent was enqueued with, as the database stores it.
fn intent_payload(intent: &Notification) -> Value {
    intent
        .validate(&herald::Limits::default())
        .expect("the suite's intents are valid")
        .payload
}
