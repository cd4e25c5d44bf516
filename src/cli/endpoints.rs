//! `herald endpoints`: registering, listing and steering webhook endpoints: their limits
//! (`--rate`, `--max-in-flight`), their circuit breakers (`reset`, and `enable`).
//!
//! Registration checks the URL's form and IP literals against `webhook.allowed_networks`
//! without resolving names; names are checked when the dispatcher connects. The secret is
//! printed once, by `add` (and `rotate-secret` prints the new one once), and never again.
//! Limits are checked by clap's value parsers (see [`super::limits`]) before anything connects,
//! so a refused value writes nothing.

use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use uuid::Uuid;

use super::Context;
use super::error::CliError;
use super::output::{fields, out, outln, print_json, table, time};
use crate::channel::signature::WebhookSecret;
use crate::limits::{Limit, MaxInFlight, Rate, parse_max_in_flight, parse_rate};
use crate::net::ssrf::{AddressPolicy, check_endpoint_url};
use crate::notification::{DEFAULT_TENANT, check_key_part};
use crate::store::endpoints::{self as store, EndpointRow, LimitChanges};

#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Register an endpoint; prints its secret once (generated unless --secret is given).
    Add(AddArgs),
    /// List endpoints with their limits and breakers (never their secrets).
    List(ListArgs),
    /// Show one endpoint: its limits, its breaker and what it has in flight (never its secret);
    /// `smtp` shows the relay's breaker.
    Show(DestinationArgs),
    /// Set or clear an endpoint's limits (at least one of --rate and --max-in-flight).
    Set(SetArgs),
    /// Close a destination's circuit breaker and forget its failures: an endpoint id, or
    /// `smtp` for the relay.
    Reset(DestinationArgs),
    /// Disable an endpoint: new notifications to it are refused, pending ones go dead.
    Disable(DisableArgs),
    /// Enable a disabled endpoint and close its circuit breaker.
    Enable(EndpointIdArgs),
    /// Replace the signing secret; the old one keeps signing beside it for a grace period, so
    /// receivers can switch without losing a delivery. Prints the new secret once.
    RotateSecret(RotateArgs),
}

#[derive(Debug, Args)]
pub struct EndpointIdArgs {
    /// The endpoint id.
    #[arg(value_name = "ID")]
    id: Uuid,
    /// Print the endpoint as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    /// The endpoint id.
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
    /// The endpoint id.
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

/// `--rate` and `--max-in-flight`, of `add` and `set`.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// At most N deliveries a second (N/s) or a minute (N/m), across all daemons: a token bucket
    /// holding one second's worth. 1 to 100000/s (6000000/m); `none` removes the limit.
    #[arg(long, value_name = "N/s|N/m|none", value_parser = parse_rate, allow_hyphen_values = true)]
    rate: Option<Limit<Rate>>,
    /// At most N deliveries in flight at once, across all daemons: 1 to 10000; `none` removes
    /// the cap.
    #[arg(long, value_name = "N|none", value_parser = parse_max_in_flight, allow_hyphen_values = true)]
    max_in_flight: Option<Limit<MaxInFlight>>,
}

impl LimitArgs {
    /// What to write: the limits given, `none` as a removal.
    fn changes(&self) -> LimitChanges<'static> {
        LimitChanges {
            rate: self.rate.map(|rate| {
                rate.value().map(|rate| {
                    (
                        i32::try_from(rate.count()).unwrap_or(i32::MAX),
                        rate.unit().as_str(),
                    )
                })
            }),
            max_in_flight: self.max_in_flight.map(|cap| {
                cap.value()
                    .map(|cap| i32::try_from(cap.get()).unwrap_or(i32::MAX))
            }),
        }
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("limit").required(true).multiple(true).args(["rate", "max_in_flight"])))]
pub struct SetArgs {
    /// The endpoint id.
    #[arg(value_name = "ID")]
    id: Uuid,
    #[command(flatten)]
    limits: LimitArgs,
    /// Print the endpoint as JSON.
    #[arg(long)]
    json: bool,
}

/// What `show` and `reset` are about.
#[derive(Debug, Clone, Copy)]
enum Destination {
    Relay,
    Endpoint(Uuid),
}

fn parse_destination(text: &str) -> Result<Destination, String> {
    if text == "smtp" {
        return Ok(Destination::Relay);
    }
    Uuid::parse_str(text)
        .map(Destination::Endpoint)
        .map_err(|_| "expected an endpoint id or smtp (the relay)".to_owned())
}

#[derive(Debug, Args)]
pub struct DestinationArgs {
    /// An endpoint id, or `smtp` for the SMTP relay.
    #[arg(value_name = "ID|smtp", value_parser = parse_destination)]
    destination: Destination,
    /// Print the endpoint (for smtp: the relay's breaker) as JSON.
    #[arg(long)]
    json: bool,
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
    #[command(flatten)]
    limits: LimitArgs,
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
        EndpointsCommand::Show(args) => show(ctx, args).await,
        EndpointsCommand::Set(args) => set(ctx, args).await,
        EndpointsCommand::Reset(args) => reset(ctx, args).await,
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
        .ok_or_else(|| not_found(id))?;
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
            .ok_or_else(|| not_found(args.id))?;
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
    let row = store::insert_with_limits(
        &mut *pool.acquire().await?,
        Uuid::now_v7(),
        &tenant,
        url.as_str(),
        secret.expose(),
        args.limits.changes(),
    )
    .await?;
    if args.json {
        return print_json(&AddedEndpoint {
            endpoint: &row,
            secret: secret.expose(),
        });
    }
    let mut shown = vec![
        ("id", row.id.to_string()),
        ("tenant", row.tenant.clone()),
        ("url", row.url.clone()),
    ];
    if args.limits.rate.is_some() || args.limits.max_in_flight.is_some() {
        shown.push(("rate", rate(&row)));
        shown.push(("max_in_flight", max_in_flight(&row)));
    }
    shown.push(("secret", secret.expose().to_owned()));
    out!("{}", fields(&shown));
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
                e.rate.clone().unwrap_or_else(|| "-".into()),
                match e.max_in_flight {
                    Some(cap) => format!("{}/{cap}", e.in_flight),
                    None => e.in_flight.to_string(),
                },
                e.breaker.clone(),
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
                "RATE",
                "IN_FLIGHT",
                "BREAKER",
                "DISABLED_REASON",
                "CREATED_AT"
            ],
            &cells
        )
    );
    Ok(())
}

async fn show(ctx: &Context, args: DestinationArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let mut conn = pool.acquire().await?;
    let optional = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or_else(|| "-".into(), time);
    let id = match args.destination {
        Destination::Endpoint(id) => id,
        Destination::Relay => {
            let row = store::get_relay(&mut conn)
                .await?
                .ok_or_else(|| CliError::not_found("destination smtp not found"))?;
            if args.json {
                return print_json(&row);
            }
            out!(
                "{}",
                fields(&[
                    ("destination", row.destination.clone()),
                    ("in_flight", row.in_flight.to_string()),
                    ("breaker", row.breaker.clone()),
                    ("consecutive_failures", row.consecutive_failures.to_string()),
                    ("breaker_opened_at", optional(row.breaker_opened_at)),
                    ("next_probe_at", optional(row.next_probe_at)),
                ])
            );
            return Ok(());
        }
    };
    let row = store::get(&mut conn, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if args.json {
        return print_json(&row);
    }
    out!(
        "{}",
        fields(&[
            ("id", row.id.to_string()),
            ("tenant", row.tenant.clone()),
            ("url", row.url.clone()),
            ("enabled", if row.enabled { "yes" } else { "no" }.into()),
            (
                "disabled_reason",
                row.disabled_reason.clone().unwrap_or_else(|| "-".into())
            ),
            ("created_at", time(row.created_at)),
            ("rate", rate(&row)),
            ("max_in_flight", max_in_flight(&row)),
            ("in_flight", row.in_flight.to_string()),
            ("breaker", row.breaker.clone()),
            ("consecutive_failures", row.consecutive_failures.to_string()),
            ("breaker_opened_at", optional(row.breaker_opened_at)),
            ("next_probe_at", optional(row.next_probe_at)),
        ])
    );
    Ok(())
}

async fn set(ctx: &Context, args: SetArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let row = store::set_limits(&mut *pool.acquire().await?, args.id, args.limits.changes())
        .await?
        .ok_or_else(|| not_found(args.id))?;
    if args.json {
        return print_json(&row);
    }
    outln!(
        "limits of {}: rate {}, max_in_flight {}",
        row.id,
        rate(&row),
        max_in_flight(&row)
    );
    Ok(())
}

async fn reset(ctx: &Context, args: DestinationArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let mut conn = pool.acquire().await?;
    match args.destination {
        Destination::Relay => {
            let row = store::reset_relay_breaker(&mut conn)
                .await?
                .ok_or_else(|| CliError::not_found("destination smtp not found"))?;
            if args.json {
                return print_json(&row);
            }
            outln!("closed the breaker of smtp");
        }
        Destination::Endpoint(id) => {
            let row = store::reset_breaker(&mut conn, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            if args.json {
                return print_json(&row);
            }
            outln!("closed the breaker of {}", row.id);
        }
    }
    Ok(())
}

fn not_found(id: Uuid) -> CliError {
    CliError::not_found(format!("webhook endpoint {id} not found"))
}

/// `10/s`, or `none`.
fn rate(row: &EndpointRow) -> String {
    row.rate.clone().unwrap_or_else(|| "none".into())
}

/// The cap, or `none`.
fn max_in_flight(row: &EndpointRow) -> String {
    row.max_in_flight
        .map_or_else(|| "none".into(), |cap| cap.to_string())
}
