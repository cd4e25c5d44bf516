//! A real browser for the console's tests: headless Chromium driven over WebDriver
//! (chromedriver on a free loopback port, one per [`Browser`]), with waits on conditions (an
//! element present, a text shown), never fixed sleeps, and full-page screenshots kept under
//! `target/console-screenshots/` as the tests' artifacts.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::scrape::free_addr;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a wait lasts before it fails the test.
const PATIENCE: Duration = Duration::from_secs(60);
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 800;

/// A headless Chromium session and the chromedriver serving it.
pub struct Browser {
    pub client: Client,
    /// The window's height beyond its viewport (the browser's own frame, even headless).
    frame: u32,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile and a 1280×800 viewport.
    pub async fn start() -> Browser {
        let addr = free_addr();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts (apt-get install chromium chromium-driver)");
        let status = format!("http://{addr}/status");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let ready = reqwest::Client::new()
                .get(&status)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={WIDTH},{HEIGHT}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&format!("http://{addr}"))
            .await
            .expect("a Chromium session starts");
        let mut browser = Browser {
            client,
            frame: 0,
            _driver: driver,
            _profile: profile,
        };
        browser.client.goto("about:blank").await.unwrap();
        let (_, inner, outer) = browser.heights().await;
        browser.frame = outer.saturating_sub(inner);
        browser.resize(HEIGHT).await;
        browser
    }

    /// The page's full height, the viewport's and the window's, in CSS pixels (read by the
    /// driver, which the page's CSP does not govern; the console itself runs no script).
    async fn heights(&self) -> (u32, u32, u32) {
        let value = self
            .client
            .execute(
                "return [document.documentElement.scrollHeight, window.innerHeight, window.outerHeight];",
                vec![],
            )
            .await
            .unwrap();
        let n = |i: usize| value[i].as_f64().unwrap_or(0.0).ceil() as u32;
        (n(0), n(1), n(2))
    }

    /// Makes the viewport 1280 wide and `height` tall.
    async fn resize(&self, height: u32) {
        self.client
            .set_window_size(WIDTH, height + self.frame)
            .await
            .unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The element matching `css`, once it is present.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
    }

    /// Whether an element matches `css` now (for asserting absence on a loaded page).
    pub async fn has(&self, css: &str) -> bool {
        self.count(css).await > 0
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// The text of the element matching `css`, once present.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Types `text` into the field matching `css` (emptied first).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Waits until the element matching `css` shows `needle`.
    pub async fn wait_for_text(&self, css: &str, needle: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let found = self.client.find(Locator::Css(css)).await;
            if let Ok(element) = found
                && element.text().await.is_ok_and(|t| t.contains(needle))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} never showed {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The path of the page shown (without host).
    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Saves a screenshot of the whole page as `target/console-screenshots/{name}.png` (the
    /// viewport grows to the page's height for it, then returns to 1280×800); returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        self.find("html").await;
        let (page, _, _) = self.heights().await;
        self.resize(page.clamp(HEIGHT, 8000)).await;
        let png = self.client.screenshot().await.unwrap();
        self.resize(HEIGHT).await;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session (and its Chromium).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// `$CARGO_TARGET_DIR/console-screenshots`, else the workspace's `target/console-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    target.join("console-screenshots")
}
