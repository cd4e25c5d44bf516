//! Pages as responses: the embedded templates (auto-escaped, as every `.html` template is in
//! minijinja), the stylesheet, and the headers every console response carries.
//!
//! Invariants:
//! - Templates and the stylesheet are compiled into the binary; the console reads no file.
//! - Every response of the console (pages, redirects, the stylesheet, refusals) carries the
//!   strict Content-Security-Policy, `nosniff` and `no-referrer` ([`secure_headers`], a layer
//!   on the console's routes); pages are `no-store`.
//! - The CSP allows no script at all and no inline style: the pages use none (charts are
//!   inline SVG drawn with presentation attributes, not `style`).

use std::sync::LazyLock;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, Value};

/// No script, no inline style, no framing, forms only to herald itself.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("login.html", include_str!("templates/login.html")),
    ("overview.html", include_str!("templates/overview.html")),
    (
        "notifications.html",
        include_str!("templates/notifications.html"),
    ),
    (
        "notification.html",
        include_str!("templates/notification.html"),
    ),
    ("endpoints.html", include_str!("templates/endpoints.html")),
    ("rotated.html", include_str!("templates/rotated.html")),
    ("explain.html", include_str!("templates/explain.html")),
    ("message.html", include_str!("templates/message.html")),
];

static STYLESHEET: &str = include_str!("console.css");

static TEMPLATE_ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        // The templates are part of the binary and checked by the tests: one that does not
        // compile is a build mistake, not a runtime condition.
        env.add_template(name, source)
            .expect("the console's embedded templates compile");
    }
    env
});

/// `template` rendered with `context`, answered with `status`.
pub fn page(status: StatusCode, template: &str, context: Value) -> Response {
    let rendered = TEMPLATE_ENV
        .get_template(template)
        .and_then(|t| t.render(context));
    match rendered {
        Ok(html) => {
            let mut response = (status, html).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Err(e) => {
            tracing::error!(template, error = %e, "console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the console could not render this page; see herald's log",
            )
                .into_response()
        }
    }
}

/// `GET /console.css`.
pub async fn stylesheet() -> Response {
    let mut response = STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// A redirect after a form (303: the browser follows with a GET).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The headers every console response carries; `no-store` unless the response chose its own
/// caching (the stylesheet).
pub async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_what_it_shows_is_escaped() {
        for (name, _) in TEMPLATES {
            TEMPLATE_ENV.get_template(name).unwrap();
        }
        let html = TEMPLATE_ENV
            .get_template("message.html")
            .unwrap()
            .render(minijinja::context! { title => "t", text => "<script>x</script>\"" })
            .unwrap();
        assert!(
            html.contains("&lt;script&gt;x&lt;&#x2f;script&gt;&quot;"),
            "{html}"
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(
            !html.contains("style="),
            "no inline style: the CSP forbids it"
        );
    }
}
