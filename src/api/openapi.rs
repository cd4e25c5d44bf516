//! The OpenAPI 3.1 document of `/v1`, served at `/v1/openapi.json`.
//!
//! Invariant: the document is generated from the handlers' own annotations as the router is
//! built (utoipa-axum's `routes!` registers a handler and its path in one step), so a route
//! cannot be served without being documented, nor documented without being served.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald",
        description = "A durable, idempotent notification dispatcher: enqueue over HTTP with the \
                       library's semantics, and operate what herald sends.",
        license(name = "MIT OR Apache-2.0"),
    ),
    modifiers(&BearerToken),
    tags(
        (name = "notifications", description = "Enqueue, read, retry, cancel, explain"),
        (name = "endpoints", description = "Webhook endpoints"),
        (name = "operations", description = "Numbers for operators"),
    ),
)]
pub struct Document;

/// The `bearer` scheme every operation names: a token from `herald tokens add`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some("A token printed by `herald tokens add` (hrld_…)".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}
