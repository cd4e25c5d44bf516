//! `GET /v1/stats`: [`crate::admin::stats`], as `herald stats --json` prints it.
//!
//! Invariant: the numbers span every tenant, so only a token bound to none may read them (a
//! tenant-bound token would learn other tenants' volumes): 403 for one that is bound.

use std::sync::Arc;

use axum::Json;
use axum::extract::State as Shared;

use super::auth::Caller;
use super::problem::Problem;
use super::schema::Refusals;
use super::{State, connection};
use crate::admin::stats::{Stats, gather};

/// Counts by state and channel, the oldest due notification, the last hour, open breakers.
#[utoipa::path(get, path = "/v1/stats", operation_id = "getStats", tag = "operations",
    responses(
        (status = 200, description = "The numbers", body = Stats),
        Refusals,
    ),
    security(("bearer" = [])))]
pub async fn stats(
    Shared(state): Shared<Arc<State>>,
    caller: Caller,
) -> Result<Json<Stats>, Problem> {
    caller.may_read()?;
    if let Some(own) = &caller.tenant {
        return Err(Problem::forbidden(format!(
            "stats span every tenant; this token acts only in tenant {own:?}"
        )));
    }
    let mut conn = connection(&state).await?;
    gather(&mut conn)
        .await
        .map(Json)
        .map_err(|e| Problem::internal(&e))
}
