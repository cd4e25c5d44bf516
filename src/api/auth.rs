//! Who is calling: the token in `Authorization: Bearer …`, checked against its row on every
//! request (a revoked token is refused from the moment it is revoked).
//!
//! Invariants: a missing, malformed, unknown, wrong or revoked token is the same 401, so the
//! answer does not tell a guess that named a real token id from one that did not; what a valid
//! token may do is decided by [`Caller`] alone.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::State;
use super::problem::Problem;
use super::token::{self, Role};
use crate::store::tokens;

/// The caller of a request: its token's role and tenant.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// `None`: every tenant.
    pub tenant: Option<String>,
}

impl Caller {
    /// Refuses (403) a caller whose role may not enqueue.
    pub fn may_enqueue(&self) -> Result<(), Problem> {
        match self.role {
            Role::Enqueue | Role::Admin => Ok(()),
            Role::Read => Err(Problem::forbidden("this token may only read")),
        }
    }

    /// Refuses (403) a caller whose role may not read.
    pub fn may_read(&self) -> Result<(), Problem> {
        match self.role {
            Role::Read | Role::Admin => Ok(()),
            Role::Enqueue => Err(Problem::forbidden("this token may only enqueue")),
        }
    }

    /// Refuses (403) a caller whose role may not act on notifications and endpoints.
    pub fn may_administer(&self) -> Result<(), Problem> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Read => Err(Problem::forbidden("this token may only read")),
            Role::Enqueue => Err(Problem::forbidden("this token may only enqueue")),
        }
    }

    /// Whether the caller may see a resource of `tenant`. One it may not see is answered as
    /// missing (404), so that a tenant-bound token cannot learn another tenant's ids.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|own| own == tenant)
    }

    /// The tenant a read is confined to: the token's own, or the one named (which for a
    /// tenant-bound token must be its own: 403 otherwise); `None` is every tenant.
    pub fn read_tenant(&self, named: Option<&str>) -> Result<Option<String>, Problem> {
        match (named, &self.tenant) {
            (Some(named), Some(own)) if named != own => Err(Problem::forbidden(format!(
                "this token acts only in tenant {own:?}"
            ))
            .with("field", "tenant")),
            (Some(named), _) => Ok(Some(named.to_owned())),
            (None, own) => Ok(own.clone()),
        }
    }

    /// The tenant an enqueue acts in: the one it names, which must be the token's own when the
    /// token is bound to one (403 otherwise); when it names none, the token's, else `default`.
    pub fn enqueue_tenant(&self, named: Option<&str>) -> Result<String, Problem> {
        match (named, &self.tenant) {
            (Some(named), Some(own)) if named != own => Err(Problem::forbidden(format!(
                "this token acts only in tenant {own:?}"
            ))
            .with("field", "tenant")),
            (Some(named), _) => Ok(named.to_owned()),
            (None, Some(own)) => Ok(own.clone()),
            (None, None) => Ok(crate::notification::DEFAULT_TENANT.to_owned()),
        }
    }
}

impl FromRequestParts<Arc<State>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<State>) -> Result<Self, Problem> {
        let presented = super::body::single(&parts.headers, &header::AUTHORIZATION)?
            .and_then(|value| value.to_str().ok())
            .and_then(bearer)
            .ok_or_else(Problem::unauthorized)?;
        authenticate(state, presented).await
    }
}

/// The caller holding the token `text` (as `herald tokens add` printed it), checked against its
/// row now: 401 for anything but a valid, unrevoked token. A token bound to the tenant of the
/// alerts endpoint (`alerts.endpoint`) is refused 403: that tenant's notifications are herald's
/// operator alerts, which speak of every tenant.
pub async fn authenticate(state: &State, text: &str) -> Result<Caller, Problem> {
    let presented = token::parse(text.trim()).ok_or_else(Problem::unauthorized)?;
    let mut conn = state
        .pool
        .acquire()
        .await
        .map_err(|e| Problem::internal(&e))?;
    let stored = tokens::find(&mut conn, presented.id)
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(Problem::unauthorized)?;
    if stored.revoked || !presented.matches(&stored.secret_hash) {
        return Err(Problem::unauthorized());
    }
    let role = Role::parse(&stored.role).ok_or_else(Problem::unauthorized)?;
    if let (Some(tenant), Some(alerts)) = (&stored.tenant, state.config.alerts.endpoint_id()) {
        let holds_alerts = crate::store::endpoints::tenant_of(&mut conn, alerts)
            .await
            .map_err(|e| Problem::internal(&e))?
            .is_some_and(|of_alerts| &of_alerts == tenant);
        if holds_alerts {
            return Err(Problem::forbidden(format!(
                "tenant {tenant:?} holds herald's operator alerts (alerts.endpoint), which speak of \
                 every tenant: tokens bound to it may not act; use one bound to no tenant"
            )));
        }
    }
    Ok(Caller {
        role,
        tenant: stored.tenant,
    })
}

/// The credentials of a `Bearer` authorization (the scheme is case-insensitive, RFC 9110).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_is_one() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
        assert_eq!(bearer(""), None);
    }
}
