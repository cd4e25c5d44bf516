//! Payload values cannot add headers to an email: a subject rendered from a value holding
//! CR/LF stays one `Subject` header, and a body holding an SMTP end-of-data line stays body.
//! Checked on the message as the real SMTP server (aiosmtpd) received it.

use herald::Notification;
use serde_json::json;
use sqlx::PgPool;

use crate::support::daemon::run_until_idle;
use crate::support::migrated;
use crate::support::smtp::{SmtpSink, email_env, templates};

/// The header block of a raw message, unfolded: one `(name, value)` per header.
fn headers(raw: &str) -> Vec<(String, String)> {
    let block = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .map(|(head, _)| head)
        .expect("a header block");
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().expect("a continuation follows a header");
            last.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':').expect("name: value");
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    headers
}

#[sqlx::test(migrations = false)]
async fn payload_values_cannot_inject_headers(pool: PgPool) {
    let pool = migrated(pool).await;
    let dir = templates(&[
        ("order_shipped/subject.txt", "Order {{ order }} shipped"),
        ("order_shipped/body.txt", "Note: {{ note }}\n"),
    ]);
    let n = Notification::email("u", "order_shipped", "b", "ann@example.com").payload(json!({
        "order": "1001\r\nBcc: eve@example.com\r\nX-Injected: yes\n\nfake body",
        "note": "line\r\n.\r\nMAIL FROM:<eve@example.com>\r\n",
    }));
    herald::enqueue(&pool, &n).await.unwrap();

    let sink = SmtpSink::start("").await;
    let port = sink.port.to_string();
    let run = run_until_idle(&pool, &email_env(&port, dir.path())).await;
    assert_eq!(run.code, 0, "{run:?}");

    let messages = sink.messages();
    assert_eq!(
        messages.len(),
        1,
        "one message: the body's lone dot did not end it"
    );
    let raw = &messages[0];
    let headers = headers(raw);
    let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        !names.contains(&"bcc") && !names.contains(&"x-injected"),
        "{raw}"
    );
    let subjects: Vec<&String> = headers
        .iter()
        .filter(|(name, _)| name == "subject")
        .map(|(_, value)| value)
        .collect();
    assert_eq!(subjects.len(), 1, "{raw}");
    assert_eq!(
        subjects[0].split_whitespace().collect::<Vec<_>>().join(" "),
        "Order 1001 Bcc: eve@example.com X-Injected: yes fake body shipped",
        "the value is text inside the one subject"
    );
    let to: Vec<&String> = headers
        .iter()
        .filter(|(name, _)| name == "to")
        .map(|(_, value)| value)
        .collect();
    assert_eq!(to, ["ann@example.com"], "{raw}");
    assert!(
        raw.contains("MAIL FROM:<eve@example.com>"),
        "the smuggled command arrived as body text: {raw}"
    );
}
