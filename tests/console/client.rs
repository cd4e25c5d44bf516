//! The console over plain HTTP, as a browser would speak to it but without one: a session
//! cookie, forms posted with or without their CSRF field, no redirect followed.

use std::time::Duration;

use crate::support::api::{Answer, Server};

/// A signed-in session: the cookie the sign-in set, and the CSRF value its pages carry.
pub struct Session {
    base: String,
    pub cookie: String,
    pub csrf: String,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Answer {
        status,
        headers,
        text: response.text().await.unwrap(),
    }
}

/// `GET url` with `cookie` (may be empty) and extra `headers`.
pub async fn get(url: &str, cookie: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client().get(url);
    if !cookie.is_empty() {
        request = request.header("cookie", cookie);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.send().await.unwrap()).await
}

/// `POST url` with a form body of `fields`.
pub async fn post(
    url: &str,
    cookie: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> Answer {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if !cookie.is_empty() {
        request = request.header("cookie", cookie);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.send().await.unwrap()).await
}

/// The value of the first hidden `csrf` field in `html`.
pub fn csrf_in(html: &str) -> String {
    let start = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a csrf field")
        + 19;
    html[start..].split('"').next().unwrap().to_owned()
}

/// The `name=value` of cookie `name` among an answer's `Set-Cookie` headers, and the whole
/// header (for its attributes).
pub fn set_cookie(answer: &Answer, name: &str) -> Option<(String, String)> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v))
}

/// The sign-in form's nonce cookie and field.
pub async fn login_form(server: &Server, headers: &[(&str, &str)]) -> (String, String) {
    let form = get(&server.url("/login"), "", headers).await;
    assert_eq!(form.status, 200, "{form:?}");
    let (cookie, _) = set_cookie(&form, "herald_login").expect("the sign-in nonce cookie");
    (cookie, csrf_in(&form.text))
}

/// Posts the sign-in form with `token`.
pub async fn sign_in_answer(server: &Server, token: &str, headers: &[(&str, &str)]) -> Answer {
    let (cookie, nonce) = login_form(server, headers).await;
    post(
        &server.url("/login"),
        &cookie,
        headers,
        &[("token", token), ("csrf", &nonce)],
    )
    .await
}

impl Session {
    pub async fn sign_in(server: &Server, token: &str) -> Session {
        let signed_in = sign_in_answer(server, token, &[]).await;
        assert_eq!(signed_in.status, 303, "{signed_in:?}");
        let (cookie, _) = set_cookie(&signed_in, "herald_session").expect("a session cookie");
        let overview = get(&server.url("/"), &cookie, &[]).await;
        assert_eq!(overview.status, 200, "{overview:?}");
        Session {
            base: server.url(""),
            csrf: csrf_in(&overview.text),
            cookie,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        get(&format!("{}{path}", self.base), &self.cookie, &[]).await
    }

    /// Posts `fields` as they are: add `("csrf", &session.csrf)` for a form from this session.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        post(&format!("{}{path}", self.base), &self.cookie, &[], fields).await
    }
}
