//! herald's group roles against the real server: each one can do what its job needs and is
//! refused the rest (SQLSTATE 42501, insufficient_privilege).

use herald::{Enqueued, Notification};
use serde_json::json;
use sqlx::PgPool;

use crate::support::cluster::Cluster;
use crate::support::daemon::FAST;
use crate::support::logins::{Login, sqlstate};
use crate::support::receiver::Receiver;
use crate::support::{Cli, Key, SECRET, endpoint_at, herald, migrated};

const DENIED: &str = "42501";
/// `herald.notifications` is a view of `herald.intents` and `herald.queue` that nobody writes
/// (object_not_in_prerequisite_state: not automatically updatable), whatever their rights.
const NOT_UPDATABLE: &str = "55000";

/// Writes to `herald.notifications`, each refused as [`NOT_UPDATABLE`].
const VIEW_WRITES: [&str; 3] = [
    "insert into herald.notifications (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, max_attempts)
     values (gen_random_uuid(), 'default', 'u', 't', 'x', decode(repeat('00', 32), 'hex'), 'email', 'a@b.co', '{}', 1)",
    "update herald.notifications set state = 'cancelled'",
    "delete from herald.notifications",
];

/// Writes to the tables behind `herald.notifications` and to `herald.destinations`.
const TABLE_WRITES: [&str; 9] = [
    "insert into herald.intents (id, tenant, user_id, type, business_id, fingerprint, channel, destination, payload, max_attempts)
     values (gen_random_uuid(), 'default', 'u', 't', 'x', decode(repeat('00', 32), 'hex'), 'email', 'a@b.co', '{}', 1)",
    "update herald.intents set state = 'cancelled', finished_at = now()",
    "delete from herald.intents",
    "insert into herald.queue (id, destination, tenant, run_at) values (gen_random_uuid(), 'smtp', 'default', now())",
    "update herald.queue set run_at = now()",
    "delete from herald.queue",
    "insert into herald.destinations (key) values ('x')",
    "update herald.destinations set claims = 0",
    "delete from herald.destinations",
];

/// herald's group roles, as `herald roles --sql` creates them.
const GROUP_ROLES: [&str; 5] = [
    "herald_owner",
    "herald_enqueue",
    "herald_reader",
    "herald_admin",
    "herald_daemon",
];

async fn try_sql(pool: &PgPool, sql: &'static str) -> String {
    sqlstate(sqlx::query(sql).execute(pool).await)
}

#[sqlx::test(migrations = false)]
async fn the_enqueue_role_enqueues_and_can_read_or_write_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    let hook = endpoint_at(&pool, "default", "https://hooks.example.com/a").await;
    let login = Login::create(&pool, Some("herald_enqueue")).await;
    let app = login.pool().await;

    // herald::migrate at an application's start: the schema is current, so no DDL is tried.
    herald::migrate(&app).await.expect("migrate is a no-op");

    let n = Notification::email("u", "welcome", "b1", "ann@example.com").payload(json!({"a": 1}));
    assert!(matches!(
        herald::enqueue(&app, &n).await.unwrap(),
        Enqueued::Created { .. }
    ));
    assert!(matches!(
        herald::enqueue(&app, &n).await.unwrap(),
        Enqueued::Duplicate { .. }
    ));
    // A conflict in the application's transaction leaves the transaction usable.
    let mut tx = app.begin().await.unwrap();
    let other = n.clone().payload(json!({"a": 2}));
    assert!(matches!(
        herald::enqueue(&mut *tx, &other).await,
        Err(herald::EnqueueError::Conflict { .. })
    ));
    let webhook = Notification::webhook("u", "welcome", "b2", hook);
    assert!(
        herald::enqueue(&mut *tx, &webhook)
            .await
            .unwrap()
            .is_created()
    );
    tx.commit().await.unwrap();
    let batch = [
        Notification::email("u", "welcome", "b3", "ann@example.com"),
        Notification::email("u", "welcome", "b4", "ann@example.com"),
    ];
    assert_eq!(herald::enqueue_many(&app, &batch).await.unwrap().len(), 2);
    assert_eq!(
        try_sql(
            &app,
            "select * from herald.enqueue('u', 'welcome', 'b5', 'ann@example.com')"
        )
        .await,
        "ok"
    );
    assert_eq!(
        try_sql(
            &app,
            r#"select * from herald.enqueue_many('[{"user_id": "u", "type": "welcome", "business_id": "b6", "email": "ann@example.com"}]')"#
        )
        .await,
        "ok"
    );

    for refused in [
        "select * from herald.notifications",
        "select * from herald.intents",
        "select * from herald.queue",
        "select * from herald.destinations",
        "select * from herald.attempts",
        "select id from herald.webhook_endpoints",
        // The helpers behind the entry points would skip the validation.
        "select herald._enqueue_validated('default', 'u', 't', 'x', 'a@b.co', null, '{}', null, 1)",
        "select herald.fingerprint('email', 'a@b.co', '{}')",
        "select herald.wake()",
        "select * from herald._sqlx_migrations",
    ]
    .into_iter()
    .chain(TABLE_WRITES)
    {
        assert_eq!(try_sql(&app, refused).await, DENIED, "{refused}");
    }
    for refused in VIEW_WRITES {
        assert_eq!(try_sql(&app, refused).await, NOT_UPDATABLE, "{refused}");
    }
    let written: i64 = sqlx::query_scalar("select count(*) from herald.notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(written, 6);
    app.close().await;
    login.drop(&pool).await;
}

#[sqlx::test(migrations = false)]
async fn the_reader_reads_everything_but_secrets_and_writes_nothing(pool: PgPool) {
    let pool = migrated(pool).await;
    endpoint_at(&pool, "default", "https://hooks.example.com/a").await;
    herald::enqueue(
        &pool,
        &Notification::email("u", "t", "b", "ann@example.com"),
    )
    .await
    .unwrap();
    let login = Login::create(&pool, Some("herald_reader")).await;
    let reader = login.pool().await;
    for allowed in [
        "select * from herald.notifications",
        "select * from herald.intents",
        "select * from herald.queue",
        "select * from herald.destinations",
        "select * from herald.attempts",
        "select id, tenant, url, enabled, disabled_reason, created_at, previous_secret_expires_at from herald.webhook_endpoints",
    ] {
        assert_eq!(try_sql(&reader, allowed).await, "ok", "{allowed}");
    }
    for refused in [
        "select secret from herald.webhook_endpoints",
        "select previous_secret from herald.webhook_endpoints",
        "select * from herald.webhook_endpoints",
        "insert into herald.webhook_endpoints (id, tenant, url, secret) values (gen_random_uuid(), 't', 'https://x.example', 'whsec_x')",
        "select * from herald.enqueue('u', 't', 'b2', 'ann@example.com')",
    ]
    .into_iter()
    .chain(TABLE_WRITES)
    {
        assert_eq!(try_sql(&reader, refused).await, DENIED, "{refused}");
    }
    for refused in VIEW_WRITES {
        assert_eq!(try_sql(&reader, refused).await, NOT_UPDATABLE, "{refused}");
    }
    reader.close().await;
    login.drop(&pool).await;
}

/// Runs `cli` and asserts it succeeded.
async fn ok(cli: Cli) -> String {
    let run = cli.run().await;
    assert_eq!(run.code, 0, "{cli:?}: {run:?}");
    run.stdout
}

#[sqlx::test(migrations = false)]
async fn an_operator_runs_every_admin_command_without_reading_secrets(pool: PgPool) {
    let pool = migrated(pool).await;
    let login = Login::create(&pool, Some("herald_admin")).await;
    let admin = || Cli::at(&login.url);
    let key = Key::new("u", "t", "b");
    let enqueue = admin()
        .enqueue(&key)
        .args(&["--email", "ann@example.com", "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(&ok(enqueue).await).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(admin().args(&["list", "--json"])).await;
    ok(admin().args(&["show", &id, "--json"])).await;
    ok(admin()
        .explain(&key)
        .args(&["--email", "ann@example.com", "--payload", "{}", "--json"]))
    .await;
    ok(admin().args(&["stats", "--json"])).await;
    ok(admin().args(&["cancel", &id])).await;
    ok(admin().args(&["retry", &id])).await;
    let added = ok(admin().args(&[
        "endpoints",
        "add",
        "--url",
        "https://hooks.example.com/x",
        "--json",
    ]))
    .await;
    let endpoint: serde_json::Value = serde_json::from_str(&added).unwrap();
    let endpoint = endpoint["id"].as_str().unwrap().to_owned();
    ok(admin().args(&["endpoints", "list", "--json"])).await;
    ok(admin().args(&["endpoints", "disable", &endpoint])).await;
    ok(admin().args(&["endpoints", "enable", &endpoint])).await;
    ok(admin().args(&[
        "endpoints",
        "set",
        &endpoint,
        "--rate",
        "10/s",
        "--max-in-flight",
        "4",
    ]))
    .await;
    ok(admin().args(&["endpoints", "show", &endpoint, "--json"])).await;
    ok(admin().args(&["endpoints", "reset", &endpoint])).await;
    ok(admin().args(&["endpoints", "reset", "smtp"])).await;
    let rotated = ok(admin().args(&["endpoints", "rotate-secret", &endpoint, "--json"])).await;
    assert!(
        rotated.contains("whsec_"),
        "the new secret is printed once: {rotated}"
    );
    ok(admin().args(&["sweep", "--dry-run"])).await;
    ok(admin().arg("sweep")).await;

    let admin = login.pool().await;
    assert_eq!(
        try_sql(&admin, "select secret from herald.webhook_endpoints").await,
        DENIED
    );
    // Limits and breakers are the operator's; the claims' bookkeeping is the daemons' alone.
    assert_eq!(
        try_sql(&admin, "update herald.destinations set claims = 0").await,
        DENIED
    );
    admin.close().await;
    login.drop(&pool).await;
}

#[sqlx::test(migrations = false)]
async fn the_daemon_delivers_with_its_role_alone(pool: PgPool) {
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    herald::enqueue(
        &pool,
        &Notification::webhook("u", "t", "b", hook).payload(json!({"n": 1})),
    )
    .await
    .unwrap();
    let login = Login::create(&pool, Some("herald_daemon")).await;
    let run = Cli::at(&login.url)
        .args(&["run", "--until-idle"])
        .envs(FAST)
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let requests = receiver.wait_for_requests(1).await;
    // Signed with the endpoint's secret, which only the daemon's role may read.
    let verifier = standardwebhooks::Webhook::new(SECRET).unwrap();
    verifier
        .verify(&requests[0].body, &requests[0].headers)
        .expect("a valid signature");
    let state: String = sqlx::query_scalar("select state from herald.notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "delivered");
    login.drop(&pool).await;
}

#[sqlx::test(migrations = false)]
async fn roles_sql_is_idempotent_and_nests_the_roles(pool: PgPool) {
    let run = Cli::new().args(&["roles", "--sql"]).run().await;
    assert_eq!(run.code, 0, "{run:?}");
    for _ in 0..2 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(run.stdout.clone()))
            .execute(&pool)
            .await
            .expect("the printed SQL runs, twice");
    }
    let nested: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "select r.rolname, r.rolcanlogin, r.rolsuper,
                pg_has_role(r.rolname, 'herald_enqueue', 'MEMBER')
         from pg_roles r where r.rolname like 'herald\\_%' and r.rolname not like 'herald\\_test\\_%'
         order by r.rolname",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        nested,
        [
            ("herald_admin".to_owned(), false, false, true),
            ("herald_daemon".to_owned(), false, false, true),
            ("herald_enqueue".to_owned(), false, false, true),
            ("herald_owner".to_owned(), false, false, false),
            ("herald_reader".to_owned(), false, false, false),
        ]
    );
    let run = Cli::new().arg("roles").run().await;
    run.assert_error(2, "give --sql");
}

#[sqlx::test(migrations = false)]
async fn herald_owner_owns_every_object(pool: PgPool) {
    let pool = migrated(pool).await;
    let foreign: Vec<String> = sqlx::query_scalar(
        "select c.oid::regclass::text from pg_class c
         where c.relnamespace = 'herald'::regnamespace and c.relkind in ('r', 'v', 'S')
           and c.relowner <> 'herald_owner'::regrole
         union all
         select p.oid::regprocedure::text from pg_proc p
         where p.pronamespace = 'herald'::regnamespace and p.proowner <> 'herald_owner'::regrole
         union all
         select nspname::text from pg_namespace where nspname = 'herald'
           and nspowner <> 'herald_owner'::regrole",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(foreign, Vec::<String>::new());
    let definers: Vec<String> = sqlx::query_scalar(
        "select p.proname::text from pg_proc p
         where p.pronamespace = 'herald'::regnamespace and p.prosecdef
           and not (p.proconfig @> array['search_path=pg_catalog, pg_temp'])
         order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        definers,
        Vec::<String>::new(),
        "SECURITY DEFINER without a fixed search_path"
    );
    let owner_is_super: bool =
        sqlx::query_scalar("select rolsuper from pg_roles where rolname = 'herald_owner'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!owner_is_super);
}

/// On a cluster where herald's roles do not exist and the migrating login may not create
/// roles, `herald migrate` still installs herald (owned by that login), names each missing
/// role and where to get the SQL that creates it, and exits 0; once a DBA ran that SQL, the
/// next `herald migrate` hands every object to herald_owner.
#[tokio::test]
async fn a_login_that_may_not_create_roles_is_told_which_are_missing() {
    let cluster = Cluster::start();
    let superuser = PgPool::connect(&cluster.url("postgres")).await.unwrap();
    for sql in [
        "create role migrator login createdb",
        "create database app owner migrator",
    ] {
        sqlx::query(sql).execute(&superuser).await.unwrap();
    }
    let url = format!("postgres://migrator@127.0.0.1:{}/app", cluster.port);
    let run = Cli::at(&url).arg("migrate").run().await;
    assert_eq!(run.code, 0, "{run:?}");
    for role in GROUP_ROLES {
        let line = run
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("role {role} does not exist")))
            .unwrap_or_else(|| panic!("a line for {role}: {run:?}"));
        assert!(line.contains("herald roles --sql"), "{line}");
    }
    let enqueue = Cli::at(&url)
        .enqueue(&Key::new("u", "t", "b"))
        .args(&["--email", "ann@example.com"]);
    assert_eq!(enqueue.run().await.code, 0, "herald works for its owner");

    let roles = Cli::new().args(&["roles", "--sql"]).run().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(roles.stdout))
        .execute(&superuser)
        .await
        .unwrap();
    sqlx::query("grant herald_owner to migrator")
        .execute(&superuser)
        .await
        .unwrap();
    let again = Cli::at(&url).arg("migrate").run().await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!again.stdout.contains("does not exist"), "{again:?}");
    let app = PgPool::connect(&cluster.url("app")).await.unwrap();
    let foreign: i64 = sqlx::query_scalar(
        "select count(*) from pg_proc where pronamespace = 'herald'::regnamespace
           and proowner <> 'herald_owner'::regrole",
    )
    .fetch_one(&app)
    .await
    .unwrap();
    assert_eq!(foreign, 0);
    app.close().await;
    superuser.close().await;
}

/// The enqueue functions run as herald's owner and take the caller's payload limit; the
/// database bounds it by the ceiling that `herald migrate` records from the configuration, so
/// no caller can store a payload larger than the operators allow.
#[sqlx::test(migrations = false)]
async fn a_caller_cannot_raise_the_payload_limit(pool: PgPool) {
    let pool = migrated(pool).await;
    let login = Login::create(&pool, Some("herald_enqueue")).await;
    let app = login.pool().await;
    let big = format!("{{\"x\": \"{}\"}}", "A".repeat(100_000));
    let refused = "invalid payload: is 100009 bytes, over the limit of 65536 bytes";
    let single = sqlx::query(
        "select * from herald.enqueue('u', 't', 'b1', email => 'ann@example.com', payload => $1::jsonb, max_payload_bytes => 2147483647)",
    )
    .bind(&big)
    .execute(&app)
    .await
    .unwrap_err();
    assert_eq!(single.as_database_error().unwrap().message(), refused);
    let items = format!(
        r#"[{{"user_id": "u", "type": "t", "business_id": "b2", "email": "ann@example.com", "payload": {big}}}]"#
    );
    let many = sqlx::query("select * from herald.enqueue_many($1::jsonb, 2147483647)")
        .bind(&items)
        .execute(&app)
        .await
        .unwrap_err();
    assert!(
        many.as_database_error()
            .unwrap()
            .message()
            .starts_with(refused),
        "{many:?}"
    );
    let n = Notification::email("u", "t", "b3", "ann@example.com")
        .payload_raw(serde_json::from_str(&big).unwrap());
    let no_limit = herald::Limits {
        max_payload_bytes: usize::MAX,
    };
    let lib = herald::enqueue_with_limits(&app, &n, &no_limit).await;
    assert!(
        matches!(&lib, Err(herald::EnqueueError::Invalid { field: "payload", message }) if message.ends_with("over the limit of 65536 bytes")),
        "{lib:?}"
    );

    // Operators raise it in the configuration; `herald migrate` records it.
    let migrate = herald(&pool)
        .arg("migrate")
        .env("HERALD_LIMITS__MAX_PAYLOAD_BYTES", "200000")
        .run()
        .await;
    assert_eq!(migrate.code, 0, "{migrate:?}");
    let lib = herald::enqueue_with_limits(&app, &n, &no_limit).await;
    assert!(lib.unwrap().is_created());
    app.close().await;
    login.drop(&pool).await;
}

/// A `herald` schema prepared before the first `herald migrate` by someone else, with an
/// overload that would win a loosely typed call inside the SECURITY DEFINER functions, is not
/// adopted: `herald migrate` refuses, naming it, and installs nothing.
#[sqlx::test(migrations = false)]
async fn a_herald_schema_prepared_by_someone_else_is_not_adopted(pool: PgPool) {
    let evil = Login::create(&pool, None).await;
    evil.grant(&pool, "create on database %2$I").await;
    let attacker = evil.pool().await;
    sqlx::raw_sql(
        "create schema herald;
         create function herald._invalid(field text, message text, item text) returns void
             language sql as $$ select $$;",
    )
    .execute(&attacker)
    .await
    .unwrap();
    attacker.close().await;

    let run = herald(&pool).arg("migrate").run().await;
    run.assert_error(
        1,
        "schema herald holds schema herald (owned by herald_test_",
    );
    assert!(
        run.stderr
            .contains("will not adopt objects it did not create"),
        "{run:?}"
    );
    let installed: bool =
        sqlx::query_scalar("select to_regclass('herald.notifications') is not null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!installed, "nothing installed into it");
    sqlx::query("drop schema herald cascade")
        .execute(&pool)
        .await
        .unwrap();
    evil.drop(&pool).await;
}

/// Rights on schema `herald` given to any role but herald's own are taken back by
/// `herald migrate`, so nobody else can add an object there later.
#[sqlx::test(migrations = false)]
async fn herald_migrate_takes_back_rights_on_the_schema_from_other_roles(pool: PgPool) {
    let other = Login::create(&pool, None).await;
    sqlx::query("create schema herald")
        .execute(&pool)
        .await
        .unwrap();
    other.grant(&pool, "usage, create on schema herald").await;
    let run = herald(&pool).arg("migrate").run().await;
    assert_eq!(run.code, 0, "{run:?}");
    let may_create: bool =
        sqlx::query_scalar("select has_schema_privilege($1, 'herald', 'CREATE')")
            .bind(&other.name)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!may_create, "the other role may no longer create in herald");
    other.drop(&pool).await;
}
