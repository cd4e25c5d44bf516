//! `herald tokens`: the tokens that may call `herald serve`'s API and console. `add` prints a
//! token once; only its hash is stored, so it cannot be shown again (revoke it and add
//! another). Revoking takes effect at once: the server reads the token's row on every request.

use clap::{Args, Subcommand};
use serde::Serialize;
use uuid::Uuid;

use super::Context;
use super::error::CliError;
use super::output::{fields, out, outln, print_json, table, time};
use crate::api::token::{self, Role};
use crate::notification::check_key_part;
use crate::store::tokens::{self as store, TokenRow};

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token; prints it once.
    Add(AddArgs),
    /// List tokens (never the tokens themselves), revoked ones too.
    List(ListArgs),
    /// Revoke a token, from now on.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// What the token is for, shown by `tokens list`.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// enqueue (enqueue only), read (read only) or admin (everything).
    #[arg(long, value_name = "enqueue|read|admin", value_parser = parse_role)]
    role: Role,
    /// Bind the token to one tenant: it acts only in that tenant. Default: every tenant.
    #[arg(long, value_name = "T")]
    tenant: Option<String>,
    /// Print one JSON object, including the token.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's id (from `tokens list`).
    #[arg(value_name = "ID")]
    id: Uuid,
    /// Print the token's row as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| "expected enqueue, read or admin".to_owned())
}

/// `tokens add --json`: the row and the token, once.
#[derive(Serialize)]
struct AddedToken<'a> {
    id: Uuid,
    name: &'a str,
    role: &'a str,
    tenant: Option<&'a str>,
    token: &'a str,
    created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn run(ctx: &Context, command: TokensCommand) -> Result<(), CliError> {
    match command {
        TokensCommand::Add(args) => add(ctx, args).await,
        TokensCommand::List(args) => list(ctx, args).await,
        TokensCommand::Revoke(args) => revoke(ctx, args).await,
    }
}

async fn add(ctx: &Context, args: AddArgs) -> Result<(), CliError> {
    check_key_part("name", &args.name).map_err(|e| CliError::usage(e.to_string()))?;
    if let Some(tenant) = &args.tenant {
        check_key_part("tenant", tenant).map_err(|e| CliError::usage(e.to_string()))?;
    }
    let made = token::generate(Uuid::now_v7()).map_err(CliError::runtime)?;
    let pool = ctx.pool(false).await?;
    let row = store::insert(
        &mut *pool.acquire().await?,
        made.id,
        &args.name,
        args.role.as_str(),
        args.tenant.as_deref(),
        &made.secret_hash,
    )
    .await?;
    if args.json {
        return print_json(&AddedToken {
            id: row.id,
            name: &row.name,
            role: &row.role,
            tenant: row.tenant.as_deref(),
            token: &made.text,
            created_at: row.created_at,
        });
    }
    out!(
        "{}",
        fields(&[
            ("id", row.id.to_string()),
            ("name", row.name.clone()),
            ("role", row.role.clone()),
            ("tenant", tenant(&row)),
            ("token", made.text.clone()),
        ])
    );
    outln!("The token is shown only now: herald keeps only its hash.");
    Ok(())
}

async fn list(ctx: &Context, args: ListArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let rows = store::list(&mut *pool.acquire().await?).await?;
    if args.json {
        return print_json(&rows);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.role.clone(),
                tenant(t),
                time(t.created_at),
                t.revoked_at.map(time).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &["ID", "NAME", "ROLE", "TENANT", "CREATED", "REVOKED"],
            &cells
        )
    );
    Ok(())
}

async fn revoke(ctx: &Context, args: RevokeArgs) -> Result<(), CliError> {
    let pool = ctx.pool(false).await?;
    let row = store::revoke(&mut *pool.acquire().await?, args.id)
        .await?
        .ok_or_else(|| CliError::not_found(format!("token {} not found", args.id)))?;
    if args.json {
        return print_json(&row);
    }
    outln!("revoked {}", row.id);
    Ok(())
}

/// The tenant a token is bound to, or `*` for every tenant.
fn tenant(row: &TokenRow) -> String {
    row.tenant.clone().unwrap_or_else(|| "*".into())
}
