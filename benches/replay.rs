//! Replays of existing keys, which `herald bench` does not measure: `cargo bench --bench replay`.
//!
//! In a scratch database `herald_bench_<random>` (created, migrated and dropped, as `herald
//! bench` does): `N` first-time enqueues from `CLIENTS` concurrent clients, each its own
//! transaction (`herald bench`'s `enqueue_single` code), then the same `N` keys with the same
//! payloads again, every one a duplicate (the insert that writes nothing, then the read of the
//! stored row). Prints both rates and their ratio.
//!
//! Environment: `DATABASE_URL` (a server where the role may create databases; default the
//! local one), `N` (default 20,000), `CLIENTS` (default 16).

use herald::bench::enqueue::single;
use herald::bench::scratch::Scratch;

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let n: u64 = env_or("N", 20_000);
    let clients: u32 = env_or("CLIENTS", 16);
    let scratch = Scratch::create(&url).await?;
    let measured = tokio::select! {
        measured = measure(&scratch, n, clients) => measured,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    scratch.drop().await?;
    let (first, replay) = measured?;
    println!("phase,value,unit");
    println!("enqueue_first_c{clients},{first:.0},notifications/s");
    println!("enqueue_replay_c{clients},{replay:.0},notifications/s");
    println!("replay/first,{:.2},ratio", replay / first);
    Ok(())
}

async fn measure(scratch: &Scratch, n: u64, clients: u32) -> Result<(f64, f64), Error> {
    let pool = scratch.pool(clients + 2).await?;
    herald::migrate(&pool).await?;
    let first = single(&pool, "replay", clients, n).await?;
    // As autovacuum would have by then; and no checkpoint of the first phase's writes lands
    // inside the second.
    sqlx::query("vacuum analyze herald.intents, herald.queue")
        .execute(&pool)
        .await?;
    sqlx::query("checkpoint").execute(&pool).await?;
    let replay = single(&pool, "replay", clients, n).await?;
    pool.close().await;
    Ok((first, replay))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
