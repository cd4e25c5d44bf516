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
use super::output::{fields, print_json, table, time};
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
    }
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
    print!(
        "{}",
        fields(&[
            ("id", row.id.to_string()),
            ("tenant", row.tenant.clone()),
            ("url", row.url.clone()),
            ("secret", secret.expose().to_owned()),
        ])
    );
    println!("The secret is shown only now: give it to the receiver to verify signatures.");
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
    print!(
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
