//! CVE-2018-1058 against herald: a role that may create objects in a schema on the caller's
//! `search_path` adds overloads of what herald's SQL calls (a function that matches a literal
//! better than the built-in, an operator, exact-signature copies for callers that put `public`
//! before `pg_catalog`). Each records `current_user` when it runs; none may ever run.

use herald::Notification;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::support::daemon::FAST;
use crate::support::logins::Login;
use crate::support::receiver::Receiver;
use crate::support::{At, Key, endpoint, endpoint_at, herald, lease, migrated};

/// What the attacker installs in `public`, as the attacker.
const TRAPS: &str = r#"
create table public.pwned (who text, via text);
grant insert on public.pwned to public;
create function public.convert_to(t text, e text) returns bytea language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'convert_to'); return pg_catalog.convert_to(t, e::name); end $$;
create function public.sha256(b bytea) returns bytea language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'sha256'); return pg_catalog.sha256(b); end $$;
create function public.char_length(t text) returns integer language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'char_length'); return pg_catalog.char_length(t); end $$;
create function public.jsonb_typeof(j jsonb) returns text language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'jsonb_typeof'); return pg_catalog.jsonb_typeof(j); end $$;
create function public.jsonb_path_exists(j jsonb, p text) returns boolean language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'jsonb_path_exists'); return pg_catalog.jsonb_path_exists(j, p::jsonpath); end $$;
create function public.format(f text, variadic a text[]) returns text language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'format'); return f; end $$;
create function public.evil_eq(a text, b text) returns boolean language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'operator ='); return a operator(pg_catalog.=) b; end $$;
create operator public.= (leftarg = text, rightarg = text, function = public.evil_eq);
create function public.evil_concat(a bytea, b bytea) returns bytea language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'operator ||'); return a operator(pg_catalog.||) b; end $$;
create operator public.|| (leftarg = bytea, rightarg = bytea, function = public.evil_concat);
create function public.evil_ne(a oid, b regrole) returns boolean language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'operator <>'); return a operator(pg_catalog.<>) b::oid; end $$;
create operator public.<> (leftarg = oid, rightarg = regrole, function = public.evil_ne);
create function public.evil_cat(a text, b integer) returns text language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'operator || text int'); return a operator(pg_catalog.||) b::text; end $$;
create operator public.|| (leftarg = text, rightarg = integer, function = public.evil_cat);
create function public.evil_mul(a numeric, b integer) returns numeric language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'operator *'); return a operator(pg_catalog.*) b::numeric; end $$;
create operator public.* (leftarg = numeric, rightarg = integer, function = public.evil_mul);
create function public.now() returns timestamptz language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'now'); return pg_catalog.now(); end $$;
create function public.gen_random_uuid() returns uuid language plpgsql as
  $$ begin insert into public.pwned values (current_user, 'gen_random_uuid'); return pg_catalog.gen_random_uuid(); end $$;
"#;

async fn set_traps(pool: &PgPool) -> Login {
    let evil = Login::create(pool, None).await;
    evil.grant(pool, "create on schema public").await;
    let attacker = evil.pool().await;
    sqlx::raw_sql(TRAPS).execute(&attacker).await.unwrap();
    attacker.close().await;
    evil
}

/// A pool of the application (a superuser here, the worst case) with `search_path`.
async fn app_pool(pool: &PgPool, search_path: &str) -> PgPool {
    let options: PgConnectOptions = (*pool.connect_options())
        .clone()
        .options([("search_path", search_path)]);
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap()
}

async fn fired(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("select who, via from public.pwned order by via")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn overloads_on_the_callers_search_path_never_run(pool: PgPool) {
    let pool = migrated(pool).await;
    let hook = endpoint(&pool, "default").await;
    let evil = set_traps(&pool).await;
    // The default path, and one that puts the attacker's schema before the built-ins.
    for (round, search_path) in ["\"$user\", public", "public, pg_catalog"]
        .into_iter()
        .enumerate()
    {
        let app = app_pool(&pool, search_path).await;
        let key = |what: &str| format!("{what}-{round}");
        // The SQL entry points, as another language calls them.
        sqlx::query(
            "select * from herald.enqueue('u', 't', $1, email => 'ann@example.com', payload => '{\"a\": [1, \"x\"]}')",
        )
        .bind(key("sql"))
        .execute(&app)
        .await
        .unwrap();
        sqlx::query("select * from herald.enqueue_many($1::jsonb)")
            .bind(json!([{"user_id": "u", "type": "t", "business_id": key("sql-many"), "webhook": hook,
                          "payload": {"b": 2}, "run_at": "2026-12-01T09:00:00Z"}]))
            .execute(&app)
            .await
            .unwrap();
        // A refusal and a conflict run the error paths.
        assert!(
            sqlx::query("select * from herald.enqueue('u', 't', $1, email => 'not an address')")
                .bind(key("bad"))
                .execute(&app)
                .await
                .is_err()
        );
        // The library: one, a replay, a conflict, and a batch.
        let n =
            Notification::email("u", "t", key("lib"), "ann@example.com").payload(json!({"c": 3}));
        herald::enqueue(&app, &n).await.unwrap();
        herald::enqueue(&app, &n).await.unwrap();
        assert!(
            herald::enqueue(&app, &n.clone().payload(json!({"c": 4})))
                .await
                .is_err()
        );
        herald::enqueue_many(
            &app,
            &[
                Notification::webhook("u", "t", key("lib-many"), hook),
                Notification::email("u", "t", key("lib-many-2"), "ann@example.com"),
            ],
        )
        .await
        .unwrap();
        app.close().await;
    }
    assert_eq!(fired(&pool).await, Vec::<(String, String)>::new());
    let enqueued: i64 = sqlx::query_scalar("select count(*) from herald.notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(enqueued, 10);

    // The traps work: a call as the caller's path resolves it fires them.
    let app = app_pool(&pool, "public, pg_catalog").await;
    sqlx::query("select convert_to('x', 'UTF8')")
        .execute(&app)
        .await
        .unwrap();
    app.close().await;
    assert_eq!(
        fired(&pool).await.len(),
        1,
        "the trap itself fires when called unqualified"
    );
    // The traps are the attacker's: dropping the login drops them.
    evil.drop(&pool).await;
}

/// herald's own connections (the daemon, the admin CLI, `herald migrate` as a superuser) run
/// statements that call built-ins and operators unqualified; they pin their `search_path`, so
/// the traps never run, even when laid before herald is installed.
#[sqlx::test(migrations = false)]
async fn herald_own_connections_never_run_them(pool: PgPool) {
    let evil = set_traps(&pool).await;
    let migrate = herald(&pool).arg("migrate").run().await;
    assert_eq!(migrate.code, 0, "{migrate:?}");
    let pool = migrated(pool).await;
    let receiver = Receiver::start(vec![]).await;
    let hook = endpoint_at(&pool, "default", &receiver.url()).await;
    // A delivery whose lease expired (a crashed daemon): the rescue writes its attempt.
    let rescued: uuid::Uuid = sqlx::query_scalar(
        "insert into herald.intents (id, tenant, user_id, type, business_id, fingerprint,
             channel, destination, payload, max_attempts)
         values (herald.uuid_v7(), 'default', 'u', 't', 'rescued', decode(repeat('00', 32), 'hex'),
                 'webhook', $1, '{}', 3)
         returning id",
    )
    .bind(hook.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    let leased = lease(
        &pool,
        rescued,
        "gone",
        At::Ago("2 minutes"),
        At::Ago("1 minute"),
    )
    .await;
    assert_eq!(leased.len(), 1);
    herald::enqueue(&pool, &Notification::webhook("u", "t", "fresh", hook))
        .await
        .unwrap();
    let run = herald(&pool)
        .args(&["run", "--until-idle"])
        .envs(FAST)
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    receiver.wait_for_requests(2).await;
    for cli in [
        herald(&pool).args(&["stats", "--json"]),
        herald(&pool).args(&["list", "--json"]),
        herald(&pool).args(&["show", &rescued.to_string()]),
        herald(&pool)
            .explain(&Key::new("u", "t", "fresh"))
            .args(&["--payload", "{}"]),
        herald(&pool).arg("sweep"),
    ] {
        let run = cli.run().await;
        assert_eq!(run.code, 0, "{cli:?}: {run:?}");
    }
    assert_eq!(fired(&pool).await, Vec::<(String, String)>::new());
    evil.drop(&pool).await;
}
