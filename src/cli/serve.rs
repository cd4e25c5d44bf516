//! `herald serve`: the HTTP API on `api.listen` until SIGINT or SIGTERM; requests in progress
//! end before it exits. (`herald run` serves it too when `api.listen` is set.) An empty `api.listen` is a usage error (exit 2): there is nothing to
//! serve.

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::error::CliError;
use super::run::stop_on_signal;

#[derive(Debug, Args)]
pub struct ServeArgs {}

/// Binds `api.listen` before anything else starts, so an address in use stops the start with a
/// clear error.
pub(super) async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, CliError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::runtime(format!("api.listen: cannot listen on {addr}: {e}")))
}

/// Refuses to serve the API as a role that cannot check tokens: every request would fail.
pub(super) async fn check_role(pool: &sqlx::PgPool) -> Result<(), CliError> {
    let mut conn = pool.acquire().await?;
    if crate::store::tokens::may_check_tokens(&mut conn).await? {
        return Ok(());
    }
    Err(CliError::runtime(
        "api.listen is set, but this database role cannot read herald.api_tokens to check \
         tokens: serve the API as a role holding herald_admin (docs/database-roles.md)",
    ))
}

pub async fn run(ctx: &Context, _args: ServeArgs) -> Result<(), CliError> {
    let config = &ctx.config;
    let Some(addr) = config.api.listen_addr() else {
        return Err(CliError::usage(
            "api.listen is empty: set it to an IP address and port to serve on \
             (e.g. HERALD_API__LISTEN=127.0.0.1:8080)",
        ));
    };
    let listener = bind(addr).await?;
    let pool = ctx.pool(false).await?;
    check_role(&pool).await?;
    let stopping = CancellationToken::new();
    tokio::spawn(stop_on_signal(stopping.clone()));
    // Requests in progress when the signal comes end before the server returns.
    crate::api::serve(listener, config, pool.clone(), stopping.clone(), stopping).await;
    pool.close().await;
    tracing::info!("herald serve stopped");
    Ok(())
}
