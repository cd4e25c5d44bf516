//! The invariants every scenario must end with, checked against the database and against what
//! the receiver saw. Each broken invariant becomes one line of `Verdict::violations`; nothing
//! here panics, so a run reports every problem of every scenario at once.
//!
//! - None lost: one row per intent, with the intent's own payload, ending `delivered` (and the
//!   receiver accepted it at least once); a doomed intent (its endpoint refuses everything)
//!   ends `dead` for a stated reason (`last_error`): after all its attempts, or because its
//!   endpoint was disabled for a breaker open too long; only doomed intents end `dead`.
//! - The receiver saw exactly the notification ids as delivery ids (`webhook-id`,
//!   `Message-ID`), each request carried its own row's payload, and every signature verified.
//!   No notification was sent more often than it was claimed.
//! - Nothing is left `running` (the scenario ends only once every row has finished).
//! - No row changed under a stale lease: each claim leaves exactly one attempt row (its own
//!   outcome, or `unknown` when its lease was reclaimed), so the attempt count equals the row's
//!   `attempts`, every attempt carries a different lease token, and a delivered row has exactly
//!   one `delivered` attempt, its last. A stale worker writing after its lease was reclaimed
//!   would leave a second row for one token, or a `delivered` that is not last.
//! - Only the leases of daemons the scenario killed or froze expire: a live daemon keeps its
//!   leases.
//! - An acceptance the sender never learnt of (the receiver accepted, yet the id was sent again)
//!   is explained: by a reclaimed lease of that very notification (the daemon died or froze
//!   before recording), or, up to a bound, by a database crash. Repeats after an ambiguous
//!   outcome (hang-up, late answer) are expected. Both kinds of duplicate send are counted.
//! - The application was told `created` exactly once per intent (at most once when a crash may
//!   have lost the answer), never `conflict` or `invalid` for a replay of its own intent, and
//!   met no database error unless the database crashed.
//!
//! The invariants of delivery isolation (in-flight counters, limits, breakers) are in
//! [`crate::isolation`].

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::{Intents, Tally};

/// One request (or SMTP message) as the receiving side saw it, in the order they arrived.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// The delivery id it carried.
    pub id: String,
    /// The receiver acted on it (accepted it, or read it whole and gave no usable answer).
    pub processed: bool,
    /// The receiver answered success in time: the sender knows.
    pub accepted: bool,
    pub signature_valid: bool,
    /// The payload it delivered, where the channel shows it (webhooks: the body's `data`).
    pub data: Option<Value>,
    /// Webhooks: from when the request had been read whole until the receiver stopped
    /// answering it (see [`crate::receiver::Seen`]).
    pub span: Option<(Instant, Instant)>,
}

/// What the scenario did, which decides what is allowed.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// Process ids of the daemons killed or frozen: only their leases may expire.
    pub struck_pids: HashSet<u32>,
    /// Database crashes.
    pub crashes: usize,
    /// Duplicate sends after acceptance that no reclaimed lease explains, allowed per crash
    /// (the deliveries in flight on every daemon when the database went away).
    pub unexplained_per_crash: usize,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub delivered: usize,
    pub dead: usize,
    pub lost: usize,
    pub distinct_ids: usize,
    pub raw_sends: usize,
    /// Sends of an id the receiver had already processed.
    pub duplicate_sends: usize,
    /// Of those, sends after the receiver had accepted the id.
    pub duplicates_after_acceptance: usize,
    /// Leases that expired and were reclaimed (`unknown` attempts written by a rescue).
    pub reclaimed: usize,
    /// Breaker openings the watcher saw (see [`crate::isolation`]).
    pub breaker_openings: usize,
    /// For each limited destination, the peak seen against its limit, e.g. `3/3 in flight`.
    pub limit_peaks: Vec<String>,
    pub violations: Vec<String>,
    /// Sightings of known bugs of herald: reported, not failing the suite.
    pub known: Vec<String>,
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
    last_error: Option<String>,
    attempt_rows: i64,
    distinct_tokens: i64,
    delivered_attempts: i64,
    delivered_is_last: bool,
    /// Owners (`host:pid:run`) of the leases of this row that expired and were reclaimed.
    reclaimed_from: Vec<String>,
}

const ROWS: &str = r"
    select n.id, n.tenant, n.user_id, n.type, n.business_id, n.payload, n.state, n.attempts,
           n.max_attempts, n.last_error,
           count(a.attempt) as attempt_rows,
           count(distinct a.lease_token) as distinct_tokens,
           count(a.attempt) filter (where a.outcome = 'delivered') as delivered_attempts,
           coalesce(max(a.attempt) filter (where a.outcome = 'delivered') = max(a.attempt), false)
               as delivered_is_last,
           array_remove(array_agg(substring(a.error from '^lease of (\S+) expired during attempt')), null)
               as reclaimed_from
    from herald.notifications n
    left join herald.attempts a on a.notification_id = n.id
    -- Every column: n.id names the row, but a view has no primary key to group by.
    group by n.id, n.tenant, n.user_id, n.type, n.business_id, n.payload, n.state, n.attempts,
             n.max_attempts, n.last_error";

pub async fn check(
    pool: &PgPool,
    intents: &Intents,
    sightings: &[Sighting],
    tally: &Tally,
    chaos: &Chaos,
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

    // One row per key (the UNIQUE constraint's job; checked, not assumed).
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
    if rows.len() != intents.notifications.len() {
        v.push(format!(
            "{} rows for {} intents",
            rows.len(),
            intents.notifications.len()
        ));
    }

    let mut seen: HashMap<&str, Vec<&Sighting>> = HashMap::new();
    for s in sightings {
        seen.entry(s.id.as_str()).or_default().push(s);
    }

    let mut unexplained = 0;
    let mut unexplained_ids = Vec::new();
    for (intent, &doomed) in intents.notifications.iter().zip(&intents.doomed) {
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
        let payload = intent_payload(intent);
        if row.payload != payload {
            v.push(format!("{id}: payload {} is not the intent's", row.payload));
        }
        if sightings
            .iter()
            .any(|s| s.data.as_ref().is_some_and(|data| *data != payload))
        {
            v.push(format!("{id}: a request carried another payload"));
        }
        match (row.state.as_str(), doomed) {
            ("delivered", false) if accepted => verdict.delivered += 1,
            ("dead", true) if !accepted && dead_for_a_stated_reason(row) => verdict.dead += 1,
            (state, doomed) => {
                verdict.lost += 1;
                v.push(format!(
                    "{id} ended {state} after {} of {} attempts (doomed: {doomed}; accepted by the receiver: {accepted}; last error: {:?})",
                    row.attempts, row.max_attempts, row.last_error
                ));
            }
        }
        if sightings.len() > row.attempts as usize {
            v.push(format!(
                "{id} was sent {} times on {} claims",
                sightings.len(),
                row.attempts
            ));
        }
        check_attempt_log(row, &id, v);

        verdict.reclaimed += row.reclaimed_from.len();
        for owner in &row.reclaimed_from {
            let pid = owner.split(':').nth(1).and_then(|p| p.parse::<u32>().ok());
            if !pid.is_some_and(|pid| chaos.struck_pids.contains(&pid)) {
                v.push(format!(
                    "{id}: the lease of {owner}, a daemon the scenario left alone, expired"
                ));
            }
        }
        let sends = duplicate_sends(sightings);
        verdict.duplicate_sends += sends.after_processing;
        verdict.duplicates_after_acceptance += sends.after_acceptance;
        let excess = sends
            .lost_acceptances
            .saturating_sub(row.reclaimed_from.len());
        if excess > 0 {
            unexplained += excess;
            unexplained_ids.push(row.id);
        }
    }
    let allowed = chaos.crashes * chaos.unexplained_per_crash;
    if unexplained > allowed {
        v.push(format!(
            "{unexplained} acceptances by the receiver were followed by another send of the same id, not explained by a reclaimed lease of that notification (database crashes explain at most {allowed}); their attempt logs:\n{}",
            attempt_logs(pool, &unexplained_ids).await
        ));
    }

    // The receiver saw exactly the notification ids (but those that went dead waiting when
    // their endpoint was disabled).
    let row_ids: HashSet<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let seen_ids: HashSet<String> = seen.keys().map(|id| (*id).to_owned()).collect();
    verdict.distinct_ids = seen_ids.len();
    verdict.raw_sends = sightings.len();
    for stray in seen_ids.difference(&row_ids) {
        v.push(format!(
            "the receiver saw delivery id {stray:?}, which is no notification"
        ));
    }
    let unseen = rows
        .iter()
        .filter(|r| !seen_ids.contains(&r.id.to_string()) && !dead_with_its_endpoint(r))
        .count();
    if unseen > 0 {
        v.push(format!("{unseen} notifications never reached the receiver"));
    }
    let forged = sightings.iter().filter(|s| !s.signature_valid).count();
    if forged > 0 {
        v.push(format!(
            "{forged} requests carried a signature that does not verify"
        ));
    }

    check_application(intents, tally, chaos, v);
    verdict
}

/// A doomed row ended dead for a reason it names: its attempts ran out (`last_error` says why
/// the last failed), or its endpoint was disabled because its breaker stayed open for
/// `breaker.disable_after` (it went dead waiting, with attempts to spare).
fn dead_for_a_stated_reason(row: &Row) -> bool {
    let error = row.last_error.as_deref().unwrap_or_default();
    (row.attempts == row.max_attempts && !error.trim().is_empty())
        || (dead_with_its_endpoint(row) && row.attempts < row.max_attempts)
}

/// Dead because its endpoint was disabled for a breaker open `breaker.disable_after`: it may
/// have gone dead waiting, never sent.
fn dead_with_its_endpoint(row: &Row) -> bool {
    let error = row.last_error.as_deref().unwrap_or_default();
    row.state == "dead"
        && error.starts_with("endpoint ")
        && error.contains(" disabled: circuit breaker open since ")
        && error.ends_with("(breaker.disable_after)")
}

/// What the sends of one id say, walking its sightings in arrival order.
struct Sends {
    /// Sends after the receiver had processed the id (a duplicate send).
    after_processing: usize,
    /// Sends after the receiver had accepted the id.
    after_acceptance: usize,
    /// Acceptances followed by another send: the sender never learnt of them, which only a
    /// daemon that died or froze before recording can explain (one reclaimed lease each). The
    /// sends that follow one, until the next acceptance, are its consequence.
    lost_acceptances: usize,
}

/// Two sends that overlap (a crash) count the second as after acceptance even if it left
/// before the first was answered: the stricter reading.
fn duplicate_sends(sightings: &[&Sighting]) -> Sends {
    let (mut processed, mut accepted) = (false, false);
    let mut sends = Sends {
        after_processing: 0,
        after_acceptance: 0,
        lost_acceptances: 0,
    };
    for (i, s) in sightings.iter().enumerate() {
        sends.after_processing += usize::from(processed);
        sends.after_acceptance += usize::from(accepted);
        processed |= s.processed;
        accepted |= s.accepted;
        if s.accepted && i + 1 < sightings.len() {
            sends.lost_acceptances += 1;
        }
    }
    sends
}

/// What the application was told while it replayed its intents.
fn check_application(intents: &Intents, tally: &Tally, chaos: &Chaos, v: &mut Vec<String>) {
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
    for (i, created) in tally.created.iter().enumerate() {
        let created = Tally::get(created);
        // A crash can swallow the answer to the one insert that created the row.
        let possible = if chaos.crashes > 0 { 0..=1 } else { 1..=1 };
        if !possible.contains(&created) {
            v.push(format!(
                "intent {:?}: {created} enqueues answered created",
                intents.notifications[i].key()
            ));
        }
    }
    let retried = Tally::get(&tally.retried);
    if retried > 0 && chaos.crashes == 0 {
        v.push(format!(
            "{retried} enqueues failed with a database error, with no crash to explain them"
        ));
    }
}

/// An attempt row: notification, attempt number, outcome, status, error.
type AttemptRow = (Uuid, i32, String, Option<i32>, Option<String>);

/// The attempt logs of `ids`, one line per attempt, to explain a violation.
async fn attempt_logs(pool: &PgPool, ids: &[Uuid]) -> String {
    let rows: Vec<AttemptRow> = sqlx::query_as(
        "select notification_id, attempt, outcome, status, error from herald.attempts
         where notification_id = any($1) order by notification_id, attempt",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    rows.iter()
        .map(|(id, attempt, outcome, status, error)| {
            format!("    {id} #{attempt} {outcome} {status:?} {error:?}")
        })
        .collect::<Vec<_>>()
        .join("\n")
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
fn intent_payload(intent: &herald::Notification) -> Value {
    intent
        .validate(&herald::Limits::default())
        .expect("the suite's intents are valid")
        .payload
        .get()
        .parse::<Value>()
        .expect("a validated payload is JSON")
}
