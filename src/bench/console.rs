//! `console_p99_ms`: the console's notifications page with its filters, with `rows` notifications
//! in the table. The rows are loaded as a busy installation holds them (20 tenants, 50,000 users,
//! 4 types; 1 in 1,000 dead, 1 in 997 cancelled, 1 in 10,000 pending, the rest delivered), then
//! an in-process `herald serve` is asked for the page, one request at a time, under each filter
//! an operator uses: none, a state (a rare one, and the queue's), a type, a tenant and user, a
//! user alone, a key search, and the next page of a list.

use std::time::Instant;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::server::Server;
use super::{BenchError, Percentiles};
use crate::config::Config;

#[derive(Debug, Clone, Serialize)]
pub struct ConsoleReport {
    pub rows: u64,
    pub load_s: f64,
    /// Every request of every filter.
    pub page_ms: Percentiles,
    /// The slowest filter's p99, and which it was.
    pub worst_filter: String,
    pub worst_filter_p99_ms: f64,
}

const FIFTIETH_NEWEST: &str = "select id from herald.intents order by id desc offset 49 limit 1";

/// Requests per filter.
const REQUESTS: usize = 40;
/// The filters, as the page's query strings.
const FILTERS: [&str; 8] = [
    "",
    "state=dead",
    "state=pending",
    "type=welcome",
    "tenant=t3&user_id=user-77",
    "user_id=user-77",
    "tenant=t3&user_id=user-5003&type=password_reset&business_id=console-5003",
    "type=invoice.paid&state=delivered",
];

pub async fn run(pool: &PgPool, config: &Config, rows: u64) -> Result<ConsoleReport, BenchError> {
    let started = Instant::now();
    load(pool, rows).await?;
    let load_s = started.elapsed().as_secs_f64();

    let server = Server::start(pool, config, "admin").await?;
    let addr = server.addr;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| BenchError::Setup(format!("cannot build an HTTP client: {e}")))?;
    let cookie = format!(
        "{}={}",
        crate::console::session::SESSION_COOKIE,
        server.token
    );
    let page = |query: &str| format!("http://{addr}/notifications?{query}");
    // The next page of an unfiltered list starts at the 50th newest notification.
    let cursor: Uuid = crate::pooling::query_scalar(FIFTIETH_NEWEST)
        .fetch_one(pool)
        .await?;
    let mut queries: Vec<String> = FILTERS.iter().map(|f| f.to_string()).collect();
    queries.push(format!("before={cursor}"));

    let mut all = Vec::new();
    let (mut worst_filter, mut worst) = (String::new(), 0.0);
    for query in &queries {
        let mut samples = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let start = Instant::now();
            let response = client
                .get(page(query))
                .header("cookie", &cookie)
                .send()
                .await
                .map_err(|e| BenchError::Setup(format!("a console request failed: {e}")))?;
            let status = response.status();
            response
                .bytes()
                .await
                .map_err(|e| BenchError::Setup(format!("a console page did not arrive: {e}")))?;
            if !status.is_success() {
                return Err(BenchError::Setup(format!(
                    "the console answered {status} to /notifications?{query}"
                )));
            }
            samples.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let p99 = Percentiles::of(&samples).p99;
        if p99 > worst {
            (worst_filter, worst) = (query.clone(), p99);
        }
        all.extend(samples);
    }
    drop(server);
    Ok(ConsoleReport {
        rows,
        load_s,
        page_ms: Percentiles::of(&all),
        worst_filter,
        worst_filter_p99_ms: worst,
    })
}

/// Loads `rows` notifications (see the module's documentation), then vacuums and analyzes, as
/// autovacuum would have by then.
async fn load(pool: &PgPool, rows: u64) -> Result<(), BenchError> {
    const SQL: &str = "
        insert into herald.intents
            (id, tenant, user_id, type, business_id, fingerprint, channel, destination,
             payload, max_attempts, attempts, state, run_at, created_at, finished_at)
        select herald._uuid_v7_at(now() - interval '1 day' + make_interval(secs => g::float8 / 100)),
               't' || (g % 20), 'user-' || (g % 50000),
               (array['order_shipped', 'welcome', 'invoice.paid', 'password_reset'])[1 + g % 4],
               'console-' || g, sha256(('console-' || g)::bytea), 'email', 'ann@example.com',
               jsonb_build_object('order', g), 8, 1, s.state, now(), now(),
               case when s.state = 'pending' then null else now() end
        from generate_series($1::int8, $2::int8) g,
             lateral (select case when g % 10000 = 0 then 'pending'
                                  when g % 1000 = 0 then 'dead'
                                  when g % 997 = 0 then 'cancelled'
                                  else 'delivered' end as state) s";
    super::scratch::load_in_chunks(pool, SQL, rows).await?;
    // VACUUM cannot run in a transaction: one simple-protocol message each.
    sqlx::raw_sql("vacuum analyze herald.intents")
        .execute(pool)
        .await?;
    sqlx::raw_sql("vacuum analyze herald.queue")
        .execute(pool)
        .await?;
    Ok(())
}
