//! Who is looking: the console's session is its API token, kept in a cookie and checked against
//! the token's row on every request, so `herald tokens revoke` ends a session at its next click.
//!
//! The cookie is `HttpOnly` (no script reads it; the console has none anyway), `SameSite=Strict`
//! (no other site's page sends it) and `Path=/`. It is `Secure` unless herald listens on a
//! loopback address and the request did not come through a TLS proxy (`X-Forwarded-Proto:
//! https`): herald speaks plain HTTP and belongs behind a TLS proxy anywhere but on the
//! operator's own machine, where browsers reach it as `http://127.0.0.1`.
//!
//! Invariants: a request without a valid session reaches no page (it is sent to `/login`); a
//! token that may not read (role `enqueue`) is no session.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

use super::csrf;
use super::form::Fields;
use super::pages;
use super::render::see_other;
use crate::api::State;
use crate::api::auth::{Caller, authenticate};
use crate::api::token::Role;

/// The session cookie: the API token itself.
pub const SESSION_COOKIE: &str = "herald_session";
/// The sign-in form's nonce (see [`csrf`]).
pub const LOGIN_COOKIE: &str = "herald_login";

/// A signed-in viewer: the token's role and tenant, and the CSRF value its forms carry.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub caller: Caller,
    pub csrf: String,
}

/// What every page's layout shows of the viewer.
#[derive(Debug, Serialize)]
pub struct ViewerView {
    pub role: &'static str,
    pub tenant: Option<String>,
    pub csrf: String,
    /// Whether action buttons are shown (role `admin`).
    pub may_act: bool,
}

impl Viewer {
    pub fn view(&self) -> ViewerView {
        ViewerView {
            role: self.caller.role.as_str(),
            tenant: self.caller.tenant.clone(),
            csrf: self.csrf.clone(),
            may_act: self.may_act(),
        }
    }

    pub fn may_act(&self) -> bool {
        self.caller.role == Role::Admin
    }

    /// A 403 page (nothing done) for a form without this session's CSRF value, checked first,
    /// or for a viewer whose role may not act; `None` when the action may go ahead.
    pub fn refuse_action(&self, form: &Fields) -> Option<Response> {
        if let Some(refused) = self.refuse_csrf(form) {
            return Some(refused);
        }
        (!self.may_act()).then(|| {
            pages::forbidden(
                self,
                "this token may only read: actions need an admin token",
            )
        })
    }

    /// A 403 page (nothing done) for a form without this session's CSRF value; `None` when it
    /// carries the right one.
    pub fn refuse_csrf(&self, form: &Fields) -> Option<Response> {
        (!csrf::matches(&self.csrf, form.raw("csrf"))).then(|| {
            pages::forbidden(
                self,
                "this form is not from this session (its CSRF token is missing or wrong): \
                 reload the page for a fresh form",
            )
        })
    }

    /// Whether the viewer may see a resource of `tenant` (else it is shown as missing).
    pub fn sees(&self, tenant: &str) -> bool {
        self.caller.sees(tenant)
    }
}

impl FromRequestParts<Arc<State>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<State>) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(see_other("/login"));
        };
        match authenticate(state, token).await {
            Ok(caller) if caller.may_read().is_ok() => Ok(Viewer {
                csrf: csrf::for_session(token),
                caller,
            }),
            Ok(_) => Err(ended(state, &parts.headers)),
            Err(problem)
                if problem.status == StatusCode::UNAUTHORIZED
                    || problem.status == StatusCode::FORBIDDEN =>
            {
                Err(ended(state, &parts.headers))
            }
            Err(_) => Err(pages::unavailable()),
        }
    }
}

/// The session is over (revoked or unknown token): forget it, and ask for a sign-in.
fn ended(state: &State, headers: &HeaderMap) -> Response {
    let mut response = see_other("/login?ended=1");
    clear_cookie(&mut response, SESSION_COOKIE, secure(state, headers));
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// Whether cookies get `Secure`: unless herald listens on loopback and the request did not
/// come through a TLS proxy.
pub fn secure(state: &State, headers: &HeaderMap) -> bool {
    secure_for(state.config.api.listen_addr(), headers)
}

fn secure_for(listen: Option<std::net::SocketAddr>, headers: &HeaderMap) -> bool {
    let behind_tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let loopback = listen.is_some_and(|addr| addr.ip().is_loopback());
    behind_tls || !loopback
}

/// The `Set-Cookie` value of a session-scoped cookie (no expiry: it ends with the browser).
pub fn cookie_header(name: &str, value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

pub fn set_cookie(response: &mut Response, name: &str, value: &str, secure: bool) {
    if let Ok(v) = HeaderValue::from_str(&cookie_header(name, value, secure)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub fn clear_cookie(response: &mut Response, name: &str, secure: bool) {
    let value = format!("{}; Max-Age=0", cookie_header(name, "", secure));
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A response that ends the session and asks for a new sign-in.
pub fn signed_out(state: &State, headers: &HeaderMap) -> Response {
    let mut response = see_other("/login");
    clear_cookie(&mut response, SESSION_COOKIE, secure(state, headers));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; herald_session=hrld_x"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("hrld_x"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "herald"), None);
        headers.insert(header::COOKIE, HeaderValue::from_static("herald_session="));
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
    }

    #[test]
    fn cookies_are_secure_unless_on_loopback_without_a_tls_proxy() {
        let plain = HeaderMap::new();
        let mut proxied = HeaderMap::new();
        proxied.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS"));
        let loopback = Some("127.0.0.1:8080".parse().unwrap());
        let loopback6 = Some("[::1]:8080".parse().unwrap());
        let anywhere = Some("0.0.0.0:8080".parse().unwrap());
        let lan = Some("10.0.0.5:8080".parse().unwrap());
        assert!(!secure_for(loopback, &plain));
        assert!(!secure_for(loopback6, &plain));
        assert!(secure_for(loopback, &proxied));
        assert!(secure_for(anywhere, &plain));
        assert!(secure_for(lan, &plain));
        assert!(secure_for(None, &plain));
    }

    #[test]
    fn the_cookie_is_httponly_strict_and_secure_when_asked() {
        assert_eq!(
            cookie_header("herald_session", "v", false),
            "herald_session=v; HttpOnly; SameSite=Strict; Path=/"
        );
        assert!(cookie_header("herald_session", "v", true).ends_with("; Secure"));
    }
}
