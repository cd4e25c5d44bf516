//! Email delivery over SMTP with lettre's pooled async transport.
//!
//! Invariants:
//! - `Message-ID: <{notification id}@{smtp.message_id_domain}>` on every attempt, so a receiving
//!   system can drop the copy of a retry whose first attempt did arrive.
//! - Every send runs under an outer timeout of `smtp.timeout`: lettre's own timeout covers only
//!   the connect, and a server that accepts the connection but never answers would otherwise
//!   hold a worker forever. A timeout is outcome `unknown` (the message may have been accepted).
//! - The `Subject` is written by [`super::header::unstructured`]: folded, no line over 78
//!   characters, and payload text that looks like an encoded-word stays literal text.
//! - 5xx is permanent (dead); 4xx, refused connections and dropped connections are retried.
//!   An attempt is `failed` when lettre's error shows the conversation stopped before
//!   `MAIL FROM` (connecting, TLS, authentication), `unknown` when it may have gone further.
//!   A missing or failing template is permanent: retrying cannot fix it.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::templates::Templates;
use super::{AttemptKind, Outcome, error_chain, truncate};
use crate::config::{SmtpConfig, SmtpTls};
use crate::delivery::Delivery;

pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    message_id_domain: String,
    timeout: Duration,
    templates: Arc<Templates>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("smtp.from: {0}")]
    From(String),
    #[error("smtp.host: {0}")]
    Tls(String),
}

impl EmailSender {
    pub fn new(
        config: &SmtpConfig,
        pool_size: u32,
        templates: Arc<Templates>,
    ) -> Result<Self, EmailSetupError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| EmailSetupError::From(format!("{e}")))?;
        Ok(EmailSender {
            transport: transport(config, Some(pool_size))?,
            from,
            message_id_domain: config.message_id_domain.clone(),
            timeout: config.timeout,
            templates,
        })
    }

    /// The `Message-ID` of a notification: stable across attempts.
    pub fn message_id(&self, n: &Delivery) -> String {
        format!("<{}@{}>", n.id, self.message_id_domain)
    }

    /// One attempt for a claimed email notification to `address`.
    pub async fn deliver(&self, n: &Delivery, address: &str) -> Outcome {
        let context = match context(n) {
            Ok(context) => context,
            Err(problem) => return Outcome::give_up(problem),
        };
        let rendered = match self.templates.render(&n.key.type_, &context) {
            Ok(rendered) => rendered,
            Err(e) => return Outcome::give_up(e.to_string()),
        };
        let to: Mailbox = match address.parse() {
            Ok(to) => to,
            Err(e) => return Outcome::give_up(format!("invalid recipient address: {e}")),
        };
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .raw_header(subject(&rendered.subject))
            .message_id(Some(self.message_id(n)));
        let message = match rendered.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(rendered.text, html)),
            None => builder.header(ContentType::TEXT_PLAIN).body(rendered.text),
        };
        let message = match message {
            Ok(message) => message,
            Err(e) => return Outcome::give_up(format!("cannot build the message: {e}")),
        };
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Err(_elapsed) => Outcome::Retry {
                kind: AttemptKind::Unknown,
                status: None,
                error: format!(
                    "no answer from the SMTP server within {} (smtp.timeout)",
                    humantime::format_duration(self.timeout)
                ),
                retry_after: None,
            },
            Ok(Ok(response)) => Outcome::Delivered {
                status: Some(u16::from(response.code()) as i32),
                detail: Some(truncate(&response.message().collect::<Vec<_>>().join(" "))),
            },
            Ok(Err(e)) => judge_error(&e),
        }
    }
}

/// The `Subject` header of `text`, encoded and folded by [`super::header`]: lettre's own
/// encoding leaves long runs without spaces unfolded and `=?…?=` payload text as is.
fn subject(text: &str) -> HeaderValue {
    let name = HeaderName::new_from_ascii_str("Subject");
    let wire = super::header::unstructured(&name, text);
    HeaderValue::dangerous_new_pre_encoded(name, text.to_owned(), wire)
}

/// The SMTP transport of `config`; pooled (`pool_size` connections at most) for delivery.
fn transport(
    config: &SmtpConfig,
    pool_size: Option<u32>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailSetupError> {
    let tls_parameters =
        || TlsParameters::new(config.host.clone()).map_err(|e| EmailSetupError::Tls(e.to_string()));
    let tls = match config.tls {
        SmtpTls::Starttls => Tls::Required(tls_parameters()?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
        SmtpTls::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
        .port(config.port)
        .tls(tls)
        .timeout(Some(config.timeout));
    if let Some(size) = pool_size {
        builder = builder.pool_config(PoolConfig::new().max_size(size.max(1)));
    }
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// Whether the SMTP server of `config` can be reached: connect, greeting, EHLO, TLS as
/// configured, and authentication when credentials are set; nothing is sent. Bounded by
/// `within`, since lettre's own timeout covers only the connect.
pub async fn check_connection(config: &SmtpConfig, within: Duration) -> Result<(), String> {
    let transport = transport(config, None).map_err(|e| e.to_string())?;
    match tokio::time::timeout(within, transport.test_connection()).await {
        Err(_) => Err(format!(
            "no answer from {}:{} within {}",
            config.host,
            config.port,
            humantime::format_duration(within)
        )),
        Ok(Err(e)) => Err(truncate(&error_chain(&e))),
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(format!(
            "{}:{} accepted the connection but did not answer NOOP",
            config.host, config.port
        )),
    }
}

/// The template context: the payload's fields, plus `herald` with the notification's identity;
/// or why the payload cannot be read as JSON values (retrying cannot change that).
fn context(n: &Delivery) -> Result<Value, String> {
    let mut context = match n.payload.to_value()? {
        Value::Object(map) => map,
        _ => Default::default(),
    };
    context.insert(
        "herald".into(),
        json!({
            "id": n.id, "type": n.key.type_, "user_id": n.key.user_id,
            "business_id": n.key.business_id, "tenant": n.key.tenant, "attempt": n.attempt,
        }),
    );
    Ok(Value::Object(context))
}

fn judge_error(e: &lettre::transport::smtp::Error) -> Outcome {
    let status = e.status().map(|code| u16::from(code) as i32);
    let error = truncate(&error_chain(e));
    if e.is_permanent() {
        return Outcome::GiveUp {
            kind: AttemptKind::Failed,
            status,
            error,
            disable_endpoint: None,
        };
    }
    let kind = if e.is_transient() || before_mail_from(e) {
        // A definite "not now" from the server, or stopped before the message was offered:
        // nothing was accepted.
        AttemptKind::Failed
    } else {
        // The conversation broke off: the server may have accepted the message.
        AttemptKind::Unknown
    };
    Outcome::Retry {
        kind,
        status,
        error,
        retry_after: None,
    }
}

/// lettre's own errors that it raises only before `MAIL FROM` (lettre 0.11: authentication,
/// STARTTLS, and the SMTPUTF8 and 8BITMIME checks at the start of `send`). Its other own
/// error, "Unknown error code", can answer the end of DATA, so it is not here.
const CLIENT_ERRORS_BEFORE_MAIL_FROM: [&str; 8] = [
    "No compatible authentication mechanism was found",
    "This mechanism does not expect a challenge",
    "This mechanism does expect a challenge",
    "Unrecognized challenge",
    "STARTTLS is not supported on this server",
    "Connection is not encrypted",
    "Envelope contains non-ascii chars but server does not support SMTPUTF8",
    "Message contains non-ascii chars but server does not support 8BITMIME",
];

/// Whether lettre's error says the conversation stopped before `MAIL FROM`, so no message
/// was offered. lettre does not name the phase; its error kinds do: a connection error comes
/// only from resolving, opening the socket (EMFILE included), connecting or setting up TLS;
/// a TLS error and a shut-down transport come before any command; of its own (client)
/// errors, those listed above. A network or response error may come after DATA: not here.
fn before_mail_from(e: &lettre::transport::smtp::Error) -> bool {
    // lettre has no `is_connection`; its Display names the kind ("Connection error: …").
    let connection = e.to_string().starts_with("Connection error");
    let early_client_error = e.is_client() && {
        let text = e.to_string();
        CLIENT_ERRORS_BEFORE_MAIL_FROM
            .iter()
            .any(|known| text.contains(known))
    };
    connection || e.is_tls() || e.is_transport_shutdown() || early_client_error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::find_source;

    fn message() -> Message {
        Message::builder()
            .from("shop@herald.test".parse().unwrap())
            .to("ann@example.com".parse().unwrap())
            .body(String::from("Hello"))
            .unwrap()
    }

    /// One send through lettre to `port` on loopback, as `deliver` sends.
    async fn send_to(port: u16) -> lettre::transport::smtp::Error {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .tls(Tls::None)
            .timeout(Some(Duration::from_secs(5)))
            .build();
        transport.send(message()).await.unwrap_err()
    }

    #[tokio::test]
    async fn a_refused_connection_is_failed() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let e = send_to(port).await;
        assert!(
            find_source::<std::io::Error>(&e)
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused),
            "{e:?}"
        );
        assert!(before_mail_from(&e), "{e}");
        assert_eq!(judge_error(&e).kind(), AttemptKind::Failed);
    }

    const EMFILE_CHILD: &str = "HERALD_TEST_EMFILE_CHILD";

    /// No file descriptor left for the socket (EMFILE): nothing was sent, `failed`. Real
    /// exhaustion, in a child process of this test binary with a low descriptor limit, so no
    /// other test runs out.
    #[test]
    fn running_out_of_file_descriptors_is_failed() {
        if std::env::var_os(EMFILE_CHILD).is_none() {
            let exe = std::env::current_exe().unwrap();
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
                .arg(exe)
                .args([
                    "--exact",
                    "channel::email::tests::running_out_of_file_descriptors_is_failed",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(EMFILE_CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A listener that would accept: only the missing descriptor stops the connection.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let e = runtime.block_on(async {
            let mut held = Vec::new();
            loop {
                match std::fs::File::open("/dev/null") {
                    Ok(file) => held.push(file),
                    Err(e) => {
                        assert_eq!(e.raw_os_error(), Some(24), "EMFILE: {e}");
                        break;
                    }
                }
            }
            send_to(port).await
        });
        assert!(
            find_source::<std::io::Error>(&e).is_some_and(|io| io.raw_os_error() == Some(24)),
            "{e:?}"
        );
        assert_eq!(judge_error(&e).kind(), AttemptKind::Failed, "{e}");
    }
}
