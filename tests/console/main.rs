//! herald's operator console against a real `herald serve`, a real PostgreSQL (a fresh database
//! per test) and, for what a user does, a real browser (headless Chromium over WebDriver, see
//! `herald_test_support::browser`): signing in, finding a notification, retrying a dead one
//! until a real `herald run` delivers it to a real receiver, steering an endpoint. What a
//! browser cannot show (headers, cookie attributes, a form posted without its CSRF field) is
//! asserted over plain HTTP (`client`). Every page the browser visits is kept as a screenshot
//! under `target/console-screenshots/`.

use herald_test_support as support;

mod browse;
mod client;
mod refusals;
mod security_headers;
mod seed;
