//! `herald endpoints`: registering and listing webhook endpoints.
//!
//! Registration checks the URL's form and IP literals against `webhook.allowed_networks`
//! without resolving names; names are checked when the dispatcher connects. The secret is
//! printed once, by `add`, and never again.

use clap::{Args, Subcommand};
use serde::Serialize;
use uuid::Uuid;

use super::Context;
use super::error::CliError;
use super::output::{fields, out, outln, print_json, table, time};
use crate::channel::signature::WebhookSecret;
use crate::net::ssrf::{AddressPolicy, check_endpoint_url};
use crate::notification::{DEFAULT_TENANT, check_key_part};
use crate::store::endpoints::{self as store, EndpointRow};

#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Register an endpoint; prints its secret once (generated unless --secret is given).
    Add(AddArgs),
    /// List endpoints (never their secrets).
    List(ListArgs),
    /// Disable an endpoint: new notifications to it are refused, pending ones go dead.
    Disable(DisableArgs),
    /// Enable a disabled endpoint.
    Enable(EndpointIdArgs),
    /// Replace the signing secret; the old one keeps signing beside it for a grace period, so
    /// receivers can switch without losing a delivery. Prints the new secret once.
    RotateSecret(RotateArgs),
}

#[derive(Debug, Args)]
pub struct EndpointIdArgs {
    #[arg(value_name = "ID")]
    id: Uuid,
    /// Print the endpoint as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    #[arg(value_name = "ID")]
    id: Uuid,
    /// Why; shown in `endpoints list` and in the last error of notifications it kills.
    #[arg(long, value_name = "TEXT", default_value = "disabled by an operator")]
    reason: String,
    /// Print the endpoint as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[arg(value_name = "ID")]
    id: Uuid,
    /// How long the old secret keeps signing too (default: webhook.secret_rotation_grace).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    grace: Option<std::time::Duration>,
    /// The new secret, whsec_<base64 of 24 to 64 bytes>. Default: 32 random bytes.
    #[arg(long, value_name = "whsec_…")]
    secret: Option<String>,
    /// Print one JSON object, including the new secret.
    #[arg(long)]
    json: bool,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("not a duration like \"24h\" ({e})"))
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// http(s) URL that receives the POSTs.
    #[arg(long, value_name = "URL")]
    url: String,
    /// Tenant that owns the endpoint; only its notifications may target it. Default "default".
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
    /// Signing secret, whsec_<base64 of 24 to 64 bytes>. Default: 32 random bytes.
    #[arg(long, value_name = "whsec_…")]
    secret: Option<String>,
    /// Print one JSON object, including the secret.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this tenant's endpoints.
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct AddedEndpoint<'a> {
    #[serde(flatten)]
    endpoint: &'a EndpointRow,
    secret: &'a str,
}

pub async fn run(ctx: &Context, command: EndpointsCommand) -> Result<(), CliError> {
    match command {
        EndpointsCommand::Add(args) => add(ctx, args).await,
        EndpointsCommand::List(args) => list(ctx, args).await,
        EndpointsCommand::Disable(args) => {
            set_enabled(ctx, args.id, Some(args.reason), args.json).await
        }
        EndpointsCommand::Enable(args) => set_enabled(ctx, args.id, None, args.json).await,
        EndpointsCommand::RotateSecret(args) => rotate(ctx, args).await,
    }
}

async fn set_enabled(
    ctx: &Context,
    id: Uuid,
    reason: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    if let Some(reason) = &reason {
        check_key_part("reason", reason).map_err(|e| CliError::usage(e.to_string()))?;
    }
    let pool = ctx.pool(false).await?;
    let row = store::set_enabled(&mut *pool.acquire().await?, id, reason.as_deref())
        .await?
        .ok_or_else(|| CliError::not_found(format!("webhook endpoint {id} not found")))?;
    if json {
        return print_json(&row);
    }
    match &row.disabled_reason {
        Some(reason) => outln!("disabled {} ({reason})", row.id),
        None => outln!("enabled {}", row.id),
    }
    Ok(())
}

#[derive(Serialize)]
struct RotatedEndpoint<'a> {
    #[serde(flatten)]
    endpoint: &'a EndpointRow,
    secret: &'a str,
    previous_secret_expires_at: chrono::DateTime<chrono::Utc>,
}

async fn rotate(ctx: &Context, args: RotateArgs) -> Result<(), CliError> {
    let secret = match &args.secret {
        Some(text) => WebhookSecret::parse(text).map_err(|e| CliError::usage(e.to_string()))?,
        None => WebhookSecret::generate().map_err(|e| CliError::runtime(e.to_string()))?,
    };
    let grace = args
        .grace
        .unwrap_or(ctx.config.webhook.secret_rotation_grace);
    let pool = ctx.pool(false).await?;
    let (row, expires) =
        store::rotate_secret(&mut *pool.acquire().await?, args.id, secret.expose(), grace)
            .await?
            .ok_or_else(|| {
                CliError::not_found(format!("webhook endpoint {} not found", args.id))
            })?;
    if args.json {
        return print_json(&RotatedEndpoint {
            endpoint: &row,
            secret: secret.expose(),
            previous_secret_expires_at: expires,
        });
    }
    out!(
        "{}",
        fields(&[
            ("id", row.id.to_string()),
            ("secret", secret.expose().to_owned()),
            ("old secret valid until", time(expires)),
        ])
    );
    outln!("The new secret is shown only now. Until then deliveries carry both signatures.");
    Ok(())
}

async fn add(ctx: &Context, args: AddArgs) -> Result<(), CliError> {
    let tenant = args.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    check_key_part("tenant", &tenant).map_err(|e| CliError::usage(e.to_string()))?;
    let webhook = &ctx.config.webhook;
    let policy = AddressPolicy::new(webhook.allowed_networks.clone());
    let url = check_endpoint_url(&args.url, &policy, webhook.https_only)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let secret = match &args.secret {
        Some(text) => WebhookSecret::parse(text).map_err(|e| CliError::usage(e.to_string()))?,
        None => WebhookSecret::generate().map_err(|e| CliError::runtime(e.to_string()))?,
    };
    let pool = ctx.pool(false).await?;
    let row = store::insert(
        &mut *pool.acquire().await?,
        Uuid::now_v7(),
        &tenant,
        url.as_str(),
        secret.expose(),
    )
    .await?;
    if args.json {
        return print_json(&AddedEndpoint {
            endpoint: &row,
            secret: secret.expose(),
        });
    }
    out!(
        "{}",
        fields(&[
            ("id", row.id.to_string()),
            ("tenant", row.tenant.clone()),
            ("url", row.url.clone()),
            ("secret", secret.expose().to_owned()),
        ])
    );
    outln!("The secret is shown only now: give it to the receiver to verify signatures.");
    Ok(())
}

async fn list(ctx: &Context, args: ListArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let rows = store::list(&mut *pool.acquire().await?, args.tenant.as_deref()).await?;
    if args.json {
        return print_json(&rows);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.tenant.clone(),
                e.url.clone(),
                if e.enabled { "yes".into() } else { "no".into() },
                e.disabled_reason.clone().unwrap_or_else(|| "-".into()),
                time(e.created_at),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "ID",
                "TENANT",
                "URL",
                "ENABLED",
                "DISABLED_REASON",
                "CREATED_AT"
            ],
            &cells
        )
    );
    Ok(())
}
