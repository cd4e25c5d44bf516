//! Signing in with an API token, and out.
//!
//! The sign-in form posts the token; it is checked as the API checks a bearer token, and a
//! token of role `enqueue` is refused (it may not read). The sign-in form carries its own CSRF
//! nonce (see [`super::csrf`]) so that another site cannot sign a browser in to its token.

use std::sync::Arc;

use axum::extract::{RawQuery, State as Shared};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;

use super::csrf;
use super::form::{Fields, Form};
use super::pages;
use super::render::{page, see_other};
use super::session::{
    LOGIN_COOKIE, SESSION_COOKIE, Viewer, clear_cookie, cookie, secure, set_cookie, signed_out,
};
use crate::api::State;
use crate::api::auth::authenticate;

/// `GET /login`.
pub async fn form(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let ended = Fields::from_query(query.as_deref()).get("ended").is_some();
    let notice = ended.then_some("Your session ended: its token is no longer valid.");
    login_page(&state, &headers, StatusCode::OK, None, notice)
}

/// The sign-in form with a fresh nonce (in its cookie and its hidden field).
fn login_page(
    state: &State,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let Some(nonce) = csrf::nonce() else {
        return pages::message(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "Unavailable",
            "The operating system's random source failed; try again.",
        );
    };
    let mut response = page(
        status,
        "login.html",
        context! { csrf => &nonce, refusal => error, ended => notice },
    );
    set_cookie(&mut response, LOGIN_COOKIE, &nonce, secure(state, headers));
    response
}

/// `POST /login`: `token`, `csrf`.
pub async fn sign_in(
    Shared(state): Shared<Arc<State>>,
    headers: HeaderMap,
    Form(form): Form,
) -> Response {
    let fields = form;
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !csrf::matches(nonce, fields.raw("csrf")) {
        return login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some("This sign-in form expired or came from elsewhere; sign in again here."),
            None,
        );
    }
    let Some(token) = fields.get("token") else {
        return login_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            Some("token: paste a token from `herald tokens add`"),
            None,
        );
    };
    let caller = match authenticate(&state, token).await {
        Ok(caller) => caller,
        Err(problem) if problem.status == StatusCode::UNAUTHORIZED => {
            return login_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("token: not a valid token (unknown, wrong or revoked)"),
                None,
            );
        }
        Err(problem) if problem.status == StatusCode::FORBIDDEN => {
            return login_page(
                &state,
                &headers,
                StatusCode::FORBIDDEN,
                Some(&format!("token: {}", problem.detail)),
                None,
            );
        }
        Err(_) => return pages::unavailable(),
    };
    if caller.may_read().is_err() {
        return login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some("token: this token may only enqueue; the console needs a read or admin token"),
            None,
        );
    }
    let secure = secure(&state, &headers);
    let mut response = see_other("/");
    set_cookie(&mut response, SESSION_COOKIE, token, secure);
    clear_cookie(&mut response, LOGIN_COOKIE, secure);
    response
}

/// `POST /logout`: `csrf`.
pub async fn sign_out(
    Shared(state): Shared<Arc<State>>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form,
) -> Response {
    if let Some(refused) = viewer.refuse_csrf(&form) {
        return refused;
    }
    signed_out(&state, &headers)
}
