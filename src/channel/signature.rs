//! Standard Webhooks v1 signing: endpoint secrets and the `webhook-signature`
//! header value.
//!
//! Owns the secret format and the exact signed content, so receivers using
//! any Standard Webhooks library (or svix's) can verify herald's deliveries.
//!
//! Invariants:
//! - A [`WebhookSecret`] always holds a valid key: "whsec_" followed by
//!   canonical, padded standard base64 of 24..=64 bytes. Parsing is strict so a
//!   secret herald accepts is one every receiver library accepts too.
//! - Key material never reaches logs: `Debug` is redacted and parse errors do
//!   not echo any part of the input. Only [`WebhookSecret::expose`] reveals it.
//! - The signed content is exactly `{msg_id}.{timestamp}.{body}` with the
//!   timestamp in decimal Unix seconds; the header lists one `v1,<base64>`
//!   signature per secret, separated by single spaces.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;
const GENERATED_KEY_BYTES: usize = 32;

/// An endpoint signing secret, "whsec_<base64 of 24..=64 random bytes>".
#[derive(Clone)]
pub struct WebhookSecret {
    /// The full "whsec_..." string, kept so it can be shown once at creation.
    encoded: String,
    /// HMAC state already keyed with the decoded secret: cloning it per
    /// signature avoids re-deriving the key, and keying happens at parse time
    /// where a (theoretical) key error can still be reported.
    keyed_mac: HmacSha256,
}

/// Why a string is not a usable webhook secret. Messages never include the
/// input, since it is key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret: must start with \"whsec_\"")]
    MissingPrefix,
    #[error("secret: the part after \"whsec_\" is not valid standard base64 with padding")]
    InvalidBase64,
    #[error(
        "secret: key must decode to {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, got {decoded_len}"
    )]
    KeyLength { decoded_len: usize },
    #[error("secret: HMAC-SHA256 rejected the key")]
    KeyRejected,
    #[error("secret: cannot generate one, the OS random source failed: {0}")]
    RandomUnavailable(String),
}

impl WebhookSecret {
    /// A fresh secret of 32 bytes from the operating system's CSPRNG. Fails only if the
    /// operating system cannot supply random bytes: there is no safe fallback, since a secret
    /// from a weaker source would let anyone forge webhooks.
    pub fn generate() -> Result<Self, SecretError> {
        let mut key = [0u8; GENERATED_KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| SecretError::RandomUnavailable(e.to_string()))?;
        Self::parse(&format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
    }

    /// Parses "whsec_" + canonical padded standard base64 of 24..=64 bytes.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let base64_key = s
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(base64_key)
            .map_err(|_| SecretError::InvalidBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::KeyLength {
                decoded_len: key.len(),
            });
        }
        let keyed_mac = HmacSha256::new_from_slice(&key).map_err(|_| SecretError::KeyRejected)?;
        Ok(Self {
            encoded: s.to_owned(),
            keyed_mac,
        })
    }

    /// The full "whsec_..." string, for showing once when the secret is created.
    pub fn expose(&self) -> &str {
        &self.encoded
    }

    /// `v1,<base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}"))>`.
    fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.keyed_mac.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_…redacted)")
    }
}

/// The `webhook-signature` header value: one `v1,<signature>` per secret,
/// space-separated, in the order given (current secret first, then the
/// previous one while a rotation is in progress). Empty when `secrets` is.
pub fn signature_header(
    secrets: &[&WebhookSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use standardwebhooks::Webhook;
    use std::time::{SystemTime, UNIX_EPOCH};

    // Known answers computed independently with python3's hmac and base64
    // modules; they pin the wire format so it can never drift.
    const SECRET_32: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const SECRET_24: &str = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7";
    const BODY: &[u8] = br#"{"event":"invoice.paid","amount":4200}"#;
    const MSG_ID: &str = "msg_2b7YpQhTmVfJ3kL";
    const TIMESTAMP: i64 = 1_700_000_000;
    const SIGNATURE_32: &str = "v1,zPq8e44Cg0jUJiUbKdoKlSh4CLpCJwkfVS7PHo7YMsk=";
    const SIGNATURE_24: &str = "v1,9NsCWudkUVS5JNneNTMJPVdwUI2cMuGfFR8JMbE2Bk0=";

    fn secret(text: &str) -> WebhookSecret {
        WebhookSecret::parse(text).unwrap()
    }

    fn now() -> i64 {
        let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        i64::try_from(elapsed.as_secs()).unwrap()
    }

    fn headers(msg_id: &str, timestamp: i64, signature: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", msg_id.parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn known_answer_vectors() {
        let (current, previous) = (secret(SECRET_32), secret(SECRET_24));
        assert_eq!(
            signature_header(&[&current], MSG_ID, TIMESTAMP, BODY),
            SIGNATURE_32
        );
        assert_eq!(
            signature_header(&[&previous], MSG_ID, TIMESTAMP, BODY),
            SIGNATURE_24
        );
        assert_eq!(
            signature_header(&[&current, &previous], MSG_ID, TIMESTAMP, BODY),
            format!("{SIGNATURE_32} {SIGNATURE_24}")
        );
        assert_eq!(
            signature_header(&[&previous, &current], MSG_ID, TIMESTAMP, BODY),
            format!("{SIGNATURE_24} {SIGNATURE_32}")
        );
        // Arbitrary bytes, a negative timestamp and an empty body sign as-is.
        let binary = [0x00, 0xff, 0xfe, 0x80, b'.'];
        assert_eq!(
            signature_header(&[&current], "msg_binary", -1, &binary),
            "v1,Gxbi4J4gfS7x1L0RJHUkTPftMlnqK/tDFEPPYRnxtKc="
        );
        assert_eq!(
            signature_header(&[&current], "msg_empty", 0, b""),
            "v1,rj/XH3Tm6G/SToL6tT4Lkb4ZUYp8+qMAMWu3q7fMFes="
        );
        assert_eq!(signature_header(&[], MSG_ID, TIMESTAMP, BODY), "");
    }

    #[test]
    fn standardwebhooks_verifies_a_single_signature() {
        let generated = WebhookSecret::generate().unwrap();
        let timestamp = now();
        let header = signature_header(&[&generated], MSG_ID, timestamp, BODY);
        let receiver = Webhook::new(generated.expose()).unwrap();
        receiver
            .verify(BODY, &headers(MSG_ID, timestamp, &header))
            .unwrap();
    }

    #[test]
    fn standardwebhooks_verifies_each_secret_of_a_rotation() {
        let (current, previous) = (WebhookSecret::generate().unwrap(), secret(SECRET_24));
        let timestamp = now();
        let header = signature_header(&[&current, &previous], MSG_ID, timestamp, BODY);
        for each in [&current, &previous] {
            let receiver = Webhook::new(each.expose()).unwrap();
            receiver
                .verify(BODY, &headers(MSG_ID, timestamp, &header))
                .unwrap();
        }
        let stranger = Webhook::new(WebhookSecret::generate().unwrap().expose()).unwrap();
        assert!(
            stranger
                .verify(BODY, &headers(MSG_ID, timestamp, &header))
                .is_err()
        );
    }

    #[test]
    fn tampering_breaks_verification() {
        let signing = secret(SECRET_32);
        let receiver = Webhook::new(SECRET_32).unwrap();
        let timestamp = now();
        let header = signature_header(&[&signing], MSG_ID, timestamp, BODY);
        receiver
            .verify(BODY, &headers(MSG_ID, timestamp, &header))
            .unwrap();

        let tampered_body = br#"{"event":"invoice.paid","amount":4201}"#;
        assert!(
            receiver
                .verify(tampered_body, &headers(MSG_ID, timestamp, &header))
                .is_err()
        );
        let tampered_id = headers("msg_2b7YpQhTmVfJ3kM", timestamp, &header);
        assert!(receiver.verify(BODY, &tampered_id).is_err());
        // One second off stays inside the receiver's tolerance window, so only
        // the signature can catch it.
        let tampered_timestamp = headers(MSG_ID, timestamp - 1, &header);
        assert!(receiver.verify(BODY, &tampered_timestamp).is_err());
    }

    #[test]
    fn generated_secrets_are_fresh_32_byte_keys() {
        let (first, second) = (
            WebhookSecret::generate().unwrap(),
            WebhookSecret::generate().unwrap(),
        );
        assert_ne!(first.expose(), second.expose());
        let base64_key = first.expose().strip_prefix("whsec_").unwrap();
        assert_eq!(STANDARD.decode(base64_key).unwrap().len(), 32);
        assert!(
            base64_key.ends_with('='),
            "standard base64 keeps its padding"
        );
        assert_eq!(secret(first.expose()).expose(), first.expose());
    }

    #[test]
    fn parse_errors() {
        let parse = WebhookSecret::parse;
        assert_eq!(
            parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").err(),
            Some(SecretError::MissingPrefix)
        );
        assert_eq!(
            parse("WHSEC_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7").err(),
            Some(SecretError::MissingPrefix)
        );
        assert_eq!(parse("").err(), Some(SecretError::MissingPrefix));
        for bad_base64 in [
            "whsec_not base64!",
            "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7\n",
            "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
            "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8-",
            "whsec__-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-",
        ] {
            assert_eq!(
                parse(bad_base64).err(),
                Some(SecretError::InvalidBase64),
                "{bad_base64:?}"
            );
        }
        let encoded = |len: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; len]));
        assert_eq!(
            parse("whsec_").err(),
            Some(SecretError::KeyLength { decoded_len: 0 })
        );
        assert_eq!(
            parse(&encoded(23)).err(),
            Some(SecretError::KeyLength { decoded_len: 23 })
        );
        assert_eq!(
            parse(&encoded(65)).err(),
            Some(SecretError::KeyLength { decoded_len: 65 })
        );
        assert!(parse(&encoded(24)).is_ok());
        assert!(parse(&encoded(64)).is_ok());
    }

    #[test]
    fn error_messages_are_single_lines_without_key_material() {
        let errors = [
            WebhookSecret::parse("AAAA").unwrap_err(),
            WebhookSecret::parse("whsec_AAA$").unwrap_err(),
            WebhookSecret::parse("whsec_AAAA").unwrap_err(),
        ];
        for error in errors {
            let message = error.to_string();
            assert!(
                message.starts_with("secret: ") && !message.contains('\n'),
                "{message:?}"
            );
            assert!(!message.contains("AAA"), "{message:?}");
        }
    }

    #[test]
    fn debug_never_reveals_the_key() {
        let secret = secret(SECRET_32);
        let debug = format!("{secret:?}");
        assert_eq!(debug, "WebhookSecret(whsec_…redacted)");
        let base64_key = SECRET_32.strip_prefix("whsec_").unwrap();
        assert!(!debug.contains(base64_key));
        let nested = format!("{:?}", Some(vec![secret.clone()]));
        assert!(
            !nested.contains(base64_key) && !nested.contains("AAECAw"),
            "{nested}"
        );
    }
}
