//! `herald.enqueue(...)` and `herald.enqueue_many(jsonb)` from psql against the Rust library:
//! every case runs three times in fresh databases — all through the library, all through psql,
//! and alternating between the two — and must produce the same outcomes (created, duplicate of
//! which step, conflict naming which step's row and what differs, invalid naming the field and,
//! where both sides word it the same, the message) and the same rows.

use std::collections::HashMap;

use herald::{EnqueueError, Enqueued, Notification};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::support::{SECRET, count_notifications, disable_endpoint, migrated, url_of};

/// Where an intent goes: an address, or an endpoint of the case by name.
#[derive(Clone)]
enum To {
    Email(&'static str),
    /// An enabled endpoint of the notification's tenant.
    Hook,
    /// A disabled endpoint of the notification's tenant.
    DisabledHook,
    /// An endpoint of another tenant.
    ForeignHook,
}

#[derive(Clone)]
struct Intent {
    tenant: String,
    user_id: String,
    type_: String,
    business_id: String,
    to: To,
    /// JSON text, sent as written to psql and parsed by serde_json for the library.
    payload: String,
    max_attempts: u32,
}

fn intent(business_id: &str, payload: &str) -> Intent {
    Intent {
        tenant: "default".into(),
        user_id: "user-42".into(),
        type_: "order_shipped".into(),
        business_id: business_id.into(),
        to: To::Email("ann@example.com"),
        payload: payload.into(),
        max_attempts: 8,
    }
}

impl Intent {
    fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = tenant.into();
        self
    }
    fn user_id(mut self, user_id: &str) -> Self {
        self.user_id = user_id.into();
        self
    }
    fn type_(mut self, type_: &str) -> Self {
        self.type_ = type_.into();
        self
    }
    fn to(mut self, to: To) -> Self {
        self.to = to;
        self
    }
    fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }
}

/// One call: a single enqueue or a batch.
#[derive(Clone)]
enum Step {
    One(Intent),
    Many(Vec<Intent>),
}

/// What a call did, with ids replaced by the step (and item) that created the row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Created,
    Duplicate(String),
    Conflict {
        holder: String,
        differs: String,
    },
    Invalid {
        field: String,
        message: Option<String>,
    },
    Batch(Vec<Outcome>),
}

struct Case {
    name: &'static str,
    steps: Vec<Step>,
}

fn case(name: &'static str, steps: Vec<Step>) -> Case {
    Case { name, steps }
}

/// Who runs step `i` of a case.
type Mix = fn(usize) -> Client;

/// Who runs a step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    Library,
    Sql,
}

struct Endpoints {
    by_tenant: HashMap<String, (Uuid, Uuid)>,
    foreign: Uuid,
}

impl Endpoints {
    /// The same ids in every run of a case, so that rows and fingerprints compare.
    async fn new(pool: &PgPool, tenants: &[String]) -> Self {
        let mut next = 0x0190_0000_0000_7000_8000_0000_0000_0000_u128;
        let mut register = async |tenant: &str| {
            next += 1;
            let id = Uuid::from_u128(next);
            let mut conn = pool.acquire().await.unwrap();
            herald::store::endpoints::insert(
                &mut conn,
                id,
                tenant,
                "https://hooks.example.com/h",
                SECRET,
            )
            .await
            .unwrap();
            id
        };
        let mut by_tenant = HashMap::new();
        for tenant in tenants {
            // An empty tenant is a case of invalid input; it cannot have endpoints.
            if by_tenant.contains_key(tenant) || tenant.is_empty() {
                continue;
            }
            let enabled = register(tenant).await;
            let disabled = register(tenant).await;
            by_tenant.insert(tenant.clone(), (enabled, disabled));
        }
        let foreign = register("someone-else").await;
        for (_, disabled) in by_tenant.values() {
            disable_endpoint(pool, *disabled, "410 Gone from the receiver").await;
        }
        Endpoints { by_tenant, foreign }
    }

    /// `message` with endpoint ids replaced by `ENDPOINT`, for readable expectations.
    fn redact(&self, message: String) -> String {
        let mut message = message;
        let ids = self
            .by_tenant
            .values()
            .flat_map(|(a, b)| [*a, *b])
            .chain([self.foreign]);
        for id in ids {
            message = message.replace(&id.to_string(), "ENDPOINT");
        }
        message
    }

    fn of(&self, intent: &Intent) -> Option<Uuid> {
        match intent.to {
            To::Email(_) => None,
            To::Hook => Some(self.by_tenant[&intent.tenant].0),
            To::DisabledHook => Some(self.by_tenant[&intent.tenant].1),
            To::ForeignHook => Some(self.foreign),
        }
    }
}

fn notification(intent: &Intent, endpoints: &Endpoints) -> Notification {
    let n = match (&intent.to, endpoints.of(intent)) {
        (To::Email(address), _) => Notification::email(
            &intent.user_id,
            &intent.type_,
            &intent.business_id,
            *address,
        ),
        (_, Some(hook)) => {
            Notification::webhook(&intent.user_id, &intent.type_, &intent.business_id, hook)
        }
        (_, None) => unreachable!("webhook intents have an endpoint"),
    };
    let payload: Value = serde_json::from_str(&intent.payload).expect("case payloads are JSON");
    n.tenant(&intent.tenant)
        .payload(payload)
        .max_attempts(intent.max_attempts)
}

/// A SQL string literal (standard_conforming_strings is on by default).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn sql_call(intent: &Intent, endpoints: &Endpoints) -> String {
    let destination = match (&intent.to, endpoints.of(intent)) {
        (To::Email(address), _) => format!("email => {}", literal(address)),
        (_, Some(hook)) => format!("webhook => '{hook}'"),
        (_, None) => unreachable!(),
    };
    format!(
        "select id, status, state from herald.enqueue(user_id => {}, type => {}, \
         business_id => {}, {destination}, payload => {}::jsonb, tenant => {}, \
         max_attempts => {})",
        literal(&intent.user_id),
        literal(&intent.type_),
        literal(&intent.business_id),
        literal(&intent.payload),
        literal(&intent.tenant),
        intent.max_attempts,
    )
}

/// One `enqueue_many` item as JSON text.
fn sql_batch_item(intent: &Intent, endpoints: &Endpoints) -> String {
    let mut item = json!({
        "tenant": intent.tenant,
        "user_id": intent.user_id,
        "type": intent.type_,
        "business_id": intent.business_id,
        "max_attempts": intent.max_attempts,
    });
    match (&intent.to, endpoints.of(intent)) {
        (To::Email(address), _) => item["email"] = json!(address),
        (_, Some(hook)) => item["webhook"] = json!(hook),
        (_, None) => unreachable!(),
    }
    // Spliced in as text, so psql's side gets the payload exactly as written.
    let mut text = item.to_string();
    text.truncate(text.len() - 1);
    format!("{text},\"payload\":{}}}", intent.payload)
}

/// What psql printed: result rows `id|status|state`, or the error's SQLSTATE and message.
enum PsqlResult {
    Rows(Vec<(Uuid, String)>),
    Error { sqlstate: String, message: String },
}

async fn psql(pool: &PgPool, sql: &str) -> PsqlResult {
    let output = tokio::process::Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(url_of(pool))
        // Verbose errors start with their SQLSTATE: "ERROR:  HR001: invalid …".
        .args(["-c", "\\set VERBOSITY verbose", "-c", sql])
        .output()
        .await
        .expect("psql runs");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    if output.status.success() {
        let rows = stdout
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let parts: Vec<&str> = line.split('|').collect();
                assert_eq!(parts.len(), 3, "a result row is id|status|state: {line}");
                (parts[0].parse().unwrap(), parts[1].to_owned())
            })
            .collect();
        return PsqlResult::Rows(rows);
    }
    // "ERROR:  HR001: invalid payload: must be a JSON object"
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("ERROR:  "))
        .unwrap_or_else(|| panic!("psql failed without an error line: {stderr}"));
    let (sqlstate, message) = line.split_once(": ").unwrap();
    PsqlResult::Error {
        sqlstate: sqlstate.to_owned(),
        message: message.to_owned(),
    }
}

/// Runs a case's steps, each by the client `who` picks, and returns the outcomes and the rows.
async fn run(
    pool: &PgPool,
    case: &Case,
    who: impl Fn(usize) -> Client,
) -> (Vec<Outcome>, Vec<String>) {
    let tenants: Vec<String> = case
        .steps
        .iter()
        .flat_map(|s| match s {
            Step::One(i) => vec![i.tenant.clone()],
            Step::Many(items) => items.iter().map(|i| i.tenant.clone()).collect(),
        })
        .collect();
    let endpoints = Endpoints::new(pool, &tenants).await;
    // Which step (and batch item) created each id.
    let mut created: HashMap<Uuid, String> = HashMap::new();
    let mut outcomes = Vec::new();
    for (index, step) in case.steps.iter().enumerate() {
        let client = who(index);
        let before = count_notifications(pool).await;
        let outcome = match step {
            Step::One(intent) => match client {
                Client::Library => {
                    let n = notification(intent, &endpoints);
                    library_outcome(herald::enqueue(pool, &n).await, &mut created, index, None)
                }
                Client::Sql => {
                    let result = psql(pool, &sql_call(intent, &endpoints)).await;
                    sql_outcome(result, &mut created, index, 1).remove(0)
                }
            },
            Step::Many(items) => {
                let outcomes = match client {
                    Client::Library => {
                        let ns: Vec<Notification> =
                            items.iter().map(|i| notification(i, &endpoints)).collect();
                        match herald::enqueue_many(pool, &ns).await {
                            Ok(results) => results
                                .into_iter()
                                .enumerate()
                                .map(|(item, r)| {
                                    library_outcome(Ok(r), &mut created, index, Some(item))
                                })
                                .collect(),
                            Err(e) => vec![library_outcome(Err(e), &mut created, index, None)],
                        }
                    }
                    Client::Sql => {
                        let array: Vec<String> = items
                            .iter()
                            .map(|i| sql_batch_item(i, &endpoints))
                            .collect();
                        let sql = format!(
                            "select id, status, state from herald.enqueue_many({}::jsonb)",
                            literal(&format!("[{}]", array.join(",")))
                        );
                        sql_outcome(psql(pool, &sql).await, &mut created, index, items.len())
                    }
                };
                match outcomes.as_slice() {
                    [only @ (Outcome::Invalid { .. } | Outcome::Conflict { .. })] => only.clone(),
                    _ => Outcome::Batch(outcomes),
                }
            }
        };
        if !matches!(outcome, Outcome::Created | Outcome::Batch(_)) {
            assert_eq!(
                count_notifications(pool).await,
                before,
                "{}: step {index} by {client:?} was refused but wrote rows",
                case.name
            );
        }
        outcomes.push(redacted(outcome, &endpoints));
    }
    let rows: Vec<String> = sqlx::query_scalar(
        "select concat_ws(' | ', tenant, user_id, type, business_id, channel,
                          destination,
                          payload::text, encode(fingerprint, 'hex'), state, max_attempts)
         from herald.notifications order by tenant, user_id, type, business_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (outcomes, rows)
}

fn redacted(outcome: Outcome, endpoints: &Endpoints) -> Outcome {
    match outcome {
        Outcome::Invalid { field, message } => Outcome::Invalid {
            field,
            message: message.map(|m| endpoints.redact(m)),
        },
        Outcome::Batch(items) => {
            Outcome::Batch(items.into_iter().map(|o| redacted(o, endpoints)).collect())
        }
        other => other,
    }
}

fn label(step: usize, item: Option<usize>) -> String {
    match item {
        Some(item) => format!("step {step} item {item}"),
        None => format!("step {step}"),
    }
}

fn library_outcome(
    result: Result<Enqueued, EnqueueError>,
    created: &mut HashMap<Uuid, String>,
    step: usize,
    item: Option<usize>,
) -> Outcome {
    match result {
        Ok(Enqueued::Created { id, .. }) => {
            created.insert(id, label(step, item));
            Outcome::Created
        }
        Ok(Enqueued::Duplicate { id, .. }) => Outcome::Duplicate(created[&id].clone()),
        Err(EnqueueError::Conflict {
            existing_id,
            differs,
            ..
        }) => Outcome::Conflict {
            holder: created[&existing_id].clone(),
            differs: differs.to_owned(),
        },
        Err(error @ EnqueueError::Invalid { field, .. }) => Outcome::Invalid {
            field: field.to_owned(),
            message: Some(error.to_string()),
        },
        Err(other) => panic!("unexpected {other:?}"),
    }
}

fn sql_outcome(
    result: PsqlResult,
    created: &mut HashMap<Uuid, String>,
    step: usize,
    items: usize,
) -> Vec<Outcome> {
    match result {
        PsqlResult::Rows(rows) => {
            assert_eq!(rows.len(), items, "one result row per item");
            let single = items == 1;
            rows.into_iter()
                .enumerate()
                .map(|(item, (id, status))| match status.as_str() {
                    "created" => {
                        created.insert(id, label(step, (!single).then_some(item)));
                        Outcome::Created
                    }
                    "duplicate" => Outcome::Duplicate(created[&id].clone()),
                    other => panic!("unexpected status {other}"),
                })
                .collect()
        }
        PsqlResult::Error { sqlstate, message } => vec![match sqlstate.as_str() {
            // "conflict: key (…) is held by notification <id> with a different <differs>"
            "HR002" => {
                let (_, rest) = message.split_once("is held by notification ").unwrap();
                let (id, differs) = rest.split_once(" with a different ").unwrap();
                Outcome::Conflict {
                    holder: created[&id.parse::<Uuid>().unwrap()].clone(),
                    differs: differs.to_owned(),
                }
            }
            // "invalid <field>: <message>"
            "HR001" => {
                let field = message
                    .strip_prefix("invalid ")
                    .and_then(|m| m.split_once(':'))
                    .map(|(field, _)| field.to_owned())
                    .unwrap_or_else(|| panic!("HR001 message names its field: {message}"));
                Outcome::Invalid {
                    field,
                    message: Some(message),
                }
            }
            other => panic!("unexpected SQLSTATE {other}: {message}"),
        }],
    }
}

/// Runs `case` in a database of its own, created on the server behind `pool` and dropped after.
async fn in_scratch_database(
    pool: &PgPool,
    case: &Case,
    who: impl Fn(usize) -> Client,
) -> (Vec<Outcome>, Vec<String>) {
    let database = format!("herald_sql_parity_{}", Uuid::new_v4().simple());
    // The name is generated here, never input.
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {database}")))
        .execute(pool)
        .await
        .unwrap();
    let scratch = PgPool::connect(&crate::support::url_for(&database))
        .await
        .unwrap();
    let scratch = migrated(scratch).await;
    let result = run(&scratch, case, who).await;
    scratch.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("drop database {database}")))
        .execute(pool)
        .await
        .unwrap();
    result
}

/// Runs a case through the library, through psql, and alternating both ways; asserts that all
/// agree, outcomes and rows (fingerprints included), and returns the outcomes.
async fn agreed(pool: &PgPool, case: Case) -> Vec<Outcome> {
    let mixes: [(&str, Mix); 4] = [
        ("the library", |_| Client::Library),
        ("psql", |_| Client::Sql),
        ("library then psql", |i| {
            if i % 2 == 0 {
                Client::Library
            } else {
                Client::Sql
            }
        }),
        ("psql then library", |i| {
            if i % 2 == 0 {
                Client::Sql
            } else {
                Client::Library
            }
        }),
    ];
    let mut runs = Vec::new();
    for (mix, who) in mixes {
        runs.push((mix, in_scratch_database(pool, &case, who).await));
    }
    let (_, (expected, expected_rows)) = &runs[0];
    for (mix, (outcomes, rows)) in &runs[1..] {
        assert_eq!(
            outcomes, expected,
            "{}: outcomes through {mix} differ from the library's",
            case.name
        );
        assert_eq!(
            rows, expected_rows,
            "{}: rows through {mix} differ from the library's",
            case.name
        );
    }
    expected.clone()
}

fn invalid(field: &str, message: &str) -> Outcome {
    Outcome::Invalid {
        field: field.into(),
        message: Some(message.into()),
    }
}

fn duplicate_of(step: &str) -> Outcome {
    Outcome::Duplicate(step.into())
}

fn conflict(holder: &str, differs: &str) -> Outcome {
    Outcome::Conflict {
        holder: holder.into(),
        differs: differs.into(),
    }
}

const ORDER: &str = r#"{"order": "1001", "items": [{"sku": "a", "qty": 1}]}"#;

#[sqlx::test(migrations = false)]
async fn replays_are_duplicates_whoever_sends_them(pool: PgPool) {
    let outcomes = agreed(
        &pool,
        case(
            "replays",
            vec![
                Step::One(intent("b1", ORDER)),
                // The same intent: other key order, other spacing.
                Step::One(intent(
                    "b1",
                    r#"{ "items" : [ {"qty":1, "sku":"a"} ], "order":"1001" }"#,
                )),
                Step::One(intent("b1", ORDER)),
                Step::One(intent("b1", ORDER).tenant("acme")),
                Step::One(intent("b1", r#"{"n": 1.5, "big": 12345678901234567890}"#).type_("n")),
                Step::One(intent("b1", r#"{"big": 12345678901234567890, "n": 1.5}"#).type_("n")),
                Step::One(intent("b2", "{}").to(To::Hook)),
                Step::One(intent("b2", "{}").to(To::Hook)),
            ],
        ),
    )
    .await;
    assert_eq!(
        outcomes,
        vec![
            Outcome::Created,
            duplicate_of("step 0"),
            duplicate_of("step 0"),
            Outcome::Created,
            Outcome::Created,
            duplicate_of("step 4"),
            Outcome::Created,
            duplicate_of("step 6"),
        ]
    );
}

#[sqlx::test(migrations = false)]
async fn a_different_intent_conflicts_and_names_the_holder(pool: PgPool) {
    let outcomes = agreed(
        &pool,
        case(
            "conflicts",
            vec![
                Step::One(intent("b1", ORDER)),
                Step::One(intent("b1", r#"{"order": "1002"}"#)),
                Step::One(intent("b1", ORDER).to(To::Email("bob@example.com"))),
                Step::One(intent("b1", ORDER).to(To::Hook)),
                Step::One(intent("b2", r#"{"n": 1}"#)),
                // 1 and 1.0 are delivered as different text, so they are different intents.
                Step::One(intent("b2", r#"{"n": 1.0}"#)),
                Step::One(intent("b2", r#"{"n": 1}"#).max_attempts(3)),
            ],
        ),
    )
    .await;
    assert_eq!(
        outcomes,
        vec![
            Outcome::Created,
            conflict("step 0", "payload"),
            conflict("step 0", "destination"),
            conflict("step 0", "channel"),
            Outcome::Created,
            conflict("step 4", "payload"),
            // max_attempts is not part of the intent.
            duplicate_of("step 4"),
        ]
    );
}

#[sqlx::test(migrations = false)]
async fn invalid_input_is_refused_with_the_same_field_and_message(pool: PgPool) {
    let deep = |levels: usize| format!("{{\"a\": {}{}}}", "[".repeat(levels), "]".repeat(levels));
    let outcomes = agreed(
        &pool,
        case(
            "invalid",
            vec![
                Step::One(intent("b", "{}").tenant("")),
                Step::One(intent("b", "{}").user_id(&"u".repeat(256))),
                Step::One(intent("b", "{}").type_("order\nshipped")),
                Step::One(intent("b\u{85}", "{}")),
                Step::One(intent("b", "{}").user_id(&"é".repeat(255))),
                Step::One(intent("b", "[1]")),
                Step::One(intent("b", r#""text""#)),
                Step::One(intent("b", &deep(64))),
                Step::One(intent("c", &deep(63))),
                Step::One(intent("b", "{}").max_attempts(0)),
                Step::One(intent("b", "{}").max_attempts(101)),
                Step::One(intent("b", "{}").to(To::Email("x@exa mple.com"))),
                Step::One(intent("b", "{}").to(To::Email("a\u{2028}b@example.com"))),
                Step::One(intent("b", "{}").to(To::Email("tab\t@example.com"))),
                Step::One(intent("b", "{}").to(To::DisabledHook)),
                Step::One(intent("b", "{}").to(To::ForeignHook)),
            ],
        ),
    )
    .await;
    assert_eq!(
        outcomes,
        vec![
            invalid("tenant", "invalid tenant: must not be empty"),
            invalid(
                "user_id",
                "invalid user_id: must be at most 255 characters, got 256"
            ),
            invalid(
                "type",
                "invalid type: must not contain control characters, found U+000A at byte 5"
            ),
            invalid(
                "business_id",
                "invalid business_id: must not contain control characters, found U+0085 at byte 1"
            ),
            Outcome::Created,
            invalid("payload", "invalid payload: must be a JSON object"),
            invalid("payload", "invalid payload: must be a JSON object"),
            invalid(
                "payload",
                "invalid payload: must be nested at most 64 levels deep"
            ),
            Outcome::Created,
            invalid(
                "max_attempts",
                "invalid max_attempts: must be between 1 and 100, got 0"
            ),
            invalid(
                "max_attempts",
                "invalid max_attempts: must be between 1 and 100, got 101"
            ),
            invalid(
                "email",
                "invalid email: must not contain whitespace, found U+0020 at byte 5"
            ),
            invalid(
                "email",
                "invalid email: must not contain whitespace, found U+2028 at byte 1"
            ),
            invalid(
                "email",
                "invalid email: must not contain control characters, found U+0009 at byte 3"
            ),
            invalid(
                "endpoint",
                "invalid endpoint: webhook endpoint ENDPOINT is disabled: 410 Gone from the receiver"
            ),
            invalid(
                "endpoint",
                "invalid endpoint: webhook endpoint ENDPOINT does not exist for tenant \"default\""
            ),
        ]
    );
}

/// The shared table of addresses (support/email_cases.rs) through both SQL functions and the
/// library, alternating: the same verdicts, word for word. enqueue_validation runs the table
/// through the library alone.
#[sqlx::test(migrations = false)]
async fn email_addresses_are_judged_alike(pool: PgPool) {
    let cases = crate::support::email_cases::EMAIL_CASES;
    let steps = cases
        .iter()
        .enumerate()
        .map(|(n, (address, _))| {
            let intent = intent(&format!("b{n}"), "{}").to(To::Email(address));
            // Every other case as a batch of one, through enqueue_many.
            if n % 2 == 0 {
                Step::One(intent)
            } else {
                Step::Many(vec![intent])
            }
        })
        .collect();
    let outcomes = agreed(&pool, case("email", steps)).await;
    let expected: Vec<Outcome> = cases
        .iter()
        .enumerate()
        .map(|(n, (_, verdict))| match (verdict, n % 2) {
            (None, 0) => Outcome::Created,
            (None, _) => Outcome::Batch(vec![Outcome::Created]),
            (Some(message), 0) => invalid("email", &format!("invalid email: {message}")),
            (Some(message), _) => invalid("email", &format!("invalid email: {message} (item 0)")),
        })
        .collect();
    for ((address, _), (got, expected)) in cases.iter().zip(outcomes.iter().zip(&expected)) {
        assert_eq!(got, expected, "{address:?}");
    }
}

/// An address refused by herald.enqueue carries the field in COLUMN too.
#[sqlx::test(migrations = false)]
async fn a_refused_address_is_named_in_the_column(pool: PgPool) {
    let pool = migrated(pool).await;
    for (address, verdict) in crate::support::email_cases::EMAIL_CASES {
        let Some(message) = verdict else { continue };
        let err = sqlx::query("select * from herald.enqueue('u', 't', 'b', email => $1)")
            .bind(address)
            .execute(&pool)
            .await
            .unwrap_err();
        let db = err.as_database_error().expect("a database error");
        assert_eq!(db.code().as_deref(), Some("HR001"), "{address:?}");
        assert_eq!(
            db.message(),
            format!("invalid email: {message}"),
            "{address:?}"
        );
        let pg = db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .unwrap();
        assert_eq!(pg.column(), Some("email"), "{address:?}");
    }
    assert_eq!(count_notifications(&pool).await, 0);
}

#[sqlx::test(migrations = false)]
async fn payloads_over_the_limit_are_refused_by_both(pool: PgPool) {
    let big = format!(r#"{{"s": "{}"}}"#, "x".repeat(70_000));
    let c = case("size", vec![Step::One(intent("b", &big))]);
    assert_eq!(
        agreed(&pool, c).await,
        vec![invalid(
            "payload",
            "invalid payload: is 70009 bytes, over the limit of 65536 bytes"
        )]
    );
}

#[sqlx::test(migrations = false)]
async fn batches_resolve_repeats_and_refuse_all_or_nothing(pool: PgPool) {
    let a = || intent("a", ORDER);
    let outcomes = agreed(
        &pool,
        case(
            "batches",
            vec![
                Step::Many(vec![a(), intent("b", "{}"), a()]),
                Step::One(a()),
                // "c" would be new, but the batch fails on the conflict and writes nothing.
                Step::Many(vec![intent("c", "{}"), intent("a", r#"{"order": "1002"}"#)]),
                Step::Many(vec![intent("d", "{}"), intent("d", r#"{"x": 1}"#)]),
                Step::Many(vec![intent("e", "{}"), intent("e", "{}").user_id("")]),
                Step::Many(vec![
                    intent("f", "{}"),
                    intent("g", "{}").to(To::ForeignHook),
                ]),
                Step::Many(vec![
                    intent("c", "{}"),
                    intent("d", "{}"),
                    intent("b", "{}"),
                ]),
            ],
        ),
    )
    .await;
    assert_eq!(
        outcomes,
        vec![
            Outcome::Batch(vec![
                Outcome::Created,
                Outcome::Created,
                duplicate_of("step 0 item 0")
            ]),
            duplicate_of("step 0 item 0"),
            conflict("step 0 item 0", "payload"),
            invalid(
                "batch",
                "invalid batch: items 0 and 1 share the key (tenant \"default\", user_id \"user-42\", \
                 type \"order_shipped\", business_id \"d\") but differ in payload"
            ),
            invalid("user_id", "invalid user_id: must not be empty (item 1)"),
            invalid(
                "endpoint",
                "invalid endpoint: webhook endpoint ENDPOINT does not exist for tenant \"default\" (item 1)"
            ),
            Outcome::Batch(vec![
                Outcome::Created,
                Outcome::Created,
                duplicate_of("step 0 item 1")
            ]),
        ]
    );
}

/// A created row wakes listening dispatchers when the caller's transaction commits, as the
/// library's enqueue does.
#[sqlx::test(migrations = false)]
async fn the_sql_function_wakes_dispatchers_on_commit(pool: PgPool) {
    let pool = migrated(pool).await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(herald::wake::CHANNEL).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let (status,): (String,) = sqlx::query_as(
        "select status from herald.enqueue(user_id => 'u', type => 't', business_id => 'b',
                                           email => 'ann@example.com')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(status, "created");
    tx.commit().await.unwrap();
    let woken = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .expect("a NOTIFY within 10 s of the commit")
        .unwrap();
    assert_eq!(woken.channel(), herald::wake::CHANNEL);
}

/// Errors carry the field machine-readably too: COLUMN and a JSON DETAIL.
#[sqlx::test(migrations = false)]
async fn errors_name_the_field_and_the_holder_in_their_fields(pool: PgPool) {
    let pool = migrated(pool).await;
    let first = herald::enqueue(
        &pool,
        &Notification::email("u", "t", "b", "ann@example.com"),
    )
    .await
    .unwrap();
    let err = sqlx::query(
        "select * from herald.enqueue(user_id => 'u', type => 't', business_id => 'b',
                                      email => 'bob@example.com')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    let db = err.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("HR002"));
    let pg = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .unwrap();
    assert_eq!(pg.column(), Some("destination"));
    let detail: Value = serde_json::from_str(pg.detail().unwrap()).unwrap();
    assert_eq!(detail["existing_id"], json!(first.id()));
    assert_eq!(detail["differs"], "destination");

    let err = sqlx::query("select * from herald.enqueue_many('[{\"user_id\": \"u\"}]')")
        .execute(&pool)
        .await
        .unwrap_err();
    let db = err.as_database_error().unwrap();
    assert_eq!(db.code().as_deref(), Some("HR001"));
    let pg = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .unwrap();
    assert_eq!(pg.column(), Some("type"));
    let detail: Value = serde_json::from_str(pg.detail().unwrap()).unwrap();
    assert_eq!(detail, json!({"field": "type", "item": 0}));
    assert_eq!(count_notifications(&pool).await, 1);
}

/// Of concurrent transactions, only the first to enqueue sends the NOTIFY: every notifying
/// commit takes PostgreSQL's global NOTIFY lock. A second transaction that commits first must
/// send none, so the first wake-up to arrive is the first transaction's.
#[sqlx::test(migrations = false)]
async fn concurrent_sql_enqueues_send_one_notify(pool: PgPool) {
    let pool = migrated(pool).await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(herald::wake::CHANNEL).await.unwrap();
    let enqueue = |business_id: &'static str| {
        sqlx::query(
            "select * from herald.enqueue(user_id => 'u', type => 't', business_id => $1,
                                          email => 'ann@example.com')",
        )
        .bind(business_id)
    };
    let mut first = pool.begin().await.unwrap();
    let first_pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *first)
        .await
        .unwrap();
    enqueue("b1").execute(&mut *first).await.unwrap();
    let mut second = pool.begin().await.unwrap();
    enqueue("b2").execute(&mut *second).await.unwrap();
    second.commit().await.unwrap();
    first.commit().await.unwrap();
    let woken = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .expect("a NOTIFY within 10 s of the commits")
        .unwrap();
    assert_eq!(
        woken.process_id() as i32,
        first_pid,
        "the second transaction committed first but must not have notified"
    );
    assert_eq!(count_notifications(&pool).await, 2);
}

/// The limit is the caller's to pass; a missing or non-positive one is refused, not read as
/// "no limit", and nothing is written.
#[sqlx::test(migrations = false)]
async fn a_bad_payload_limit_is_refused_naming_it(pool: PgPool) {
    let pool = migrated(pool).await;
    for (limit, shown) in [("null", "null"), ("0", "0"), ("-5", "-5")] {
        for call in [
            format!(
                "select * from herald.enqueue(user_id => 'u', type => 't', business_id => 'b',
                                              email => 'ann@example.com', max_payload_bytes => {limit})"
            ),
            format!(
                "select * from herald.enqueue_many('[{{\"user_id\": \"u\", \"type\": \"t\",
                    \"business_id\": \"b\", \"email\": \"ann@example.com\"}}]', {limit})"
            ),
            // Also with nothing to enqueue.
            format!("select * from herald.enqueue_many('[]', {limit})"),
        ] {
            let err = sqlx::query(sqlx::AssertSqlSafe(call))
                .execute(&pool)
                .await
                .unwrap_err();
            let db = err.as_database_error().expect("a database error");
            assert_eq!(db.code().as_deref(), Some("HR001"));
            assert_eq!(
                db.message(),
                format!("invalid max_payload_bytes: must be at least 1, got {shown}")
            );
        }
    }
    assert_eq!(count_notifications(&pool).await, 0);
}

/// `enqueue_many`'s JSON items: every malformed field is refused naming it and the item, and
/// nothing is written; a valid `run_at` is stored as given.
#[sqlx::test(migrations = false)]
async fn malformed_batch_items_are_refused_naming_the_field(pool: PgPool) {
    let pool = migrated(pool).await;
    let base = r#""user_id": "u", "type": "t", "business_id": "b", "email": "ann@example.com""#;
    let cases = [
        (
            format!(r#"{{{base}, "run_at": "tomorrow"}}"#),
            r#"invalid run_at: "tomorrow" is not an RFC 3339 timestamp with an offset (item 0)"#,
        ),
        (
            format!(r#"{{{base}, "run_at": "2026-13-45T00:00:00Z"}}"#),
            r#"invalid run_at: "2026-13-45T00:00:00Z" is not an RFC 3339 timestamp with an offset (item 0)"#,
        ),
        (
            format!(r#"{{{base}, "run_at": "2026-12-01T09:00:00"}}"#),
            r#"invalid run_at: "2026-12-01T09:00:00" is not an RFC 3339 timestamp with an offset (item 0)"#,
        ),
        (
            r#"{"user_id": "u", "type": "t", "business_id": "b", "webhook": "not-a-uuid"}"#.into(),
            r#"invalid webhook: "not-a-uuid" is not an endpoint id (a UUID) (item 0)"#,
        ),
        (
            format!(r#"{{{base}, "colour": "red"}}"#),
            "invalid colour: is not a notification field (item 0)",
        ),
        (
            r#"{"user_id": 42, "type": "t", "business_id": "b", "email": "ann@example.com"}"#
                .into(),
            "invalid user_id: must be a string (item 0)",
        ),
        (
            format!(r#"{{{base}, "max_attempts": "many"}}"#),
            r#"invalid max_attempts: must be between 1 and 100, got "many" (item 0)"#,
        ),
        // A JSON number, as the library sends it.
        (
            format!(r#"{{{base}, "max_attempts": "5"}}"#),
            r#"invalid max_attempts: must be between 1 and 100, got "5" (item 0)"#,
        ),
        (
            "[]".into(),
            "invalid notifications: each item must be a JSON object (item 0)",
        ),
    ];
    for (item, message) in cases {
        let err = sqlx::query("select * from herald.enqueue_many($1::jsonb)")
            .bind(format!("[{item}]"))
            .execute(&pool)
            .await
            .unwrap_err();
        let db = err.as_database_error().expect("a database error");
        assert_eq!(db.code().as_deref(), Some("HR001"), "{item}");
        assert_eq!(db.message(), message);
    }
    assert_eq!(count_notifications(&pool).await, 0);

    let (status,): (String,) = sqlx::query_as("select status from herald.enqueue_many($1::jsonb)")
        .bind(format!(
            r#"[{{{base}, "run_at": "2030-01-02T03:04:05+02:00"}}]"#
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "created");
    let run_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select run_at from herald.notifications")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(run_at.to_rfc3339(), "2030-01-02T01:04:05+00:00");
}
