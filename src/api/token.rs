//! API tokens: what a client presents, and how it is checked.
//!
//! A token is `hrld_` followed by the unpadded base64url of 48 bytes: the 16 of its row's id,
//! then 32 random ones, its secret. The row keeps only the SHA-256 of the secret.
//!
//! Invariants:
//! - The secret comes from the operating system's random source, or no token is made.
//! - Nothing secret selects a row: the id does (primary key), and the secret's hash is then
//!   compared with the stored one in constant time, so neither the database's index nor the
//!   comparison tells an attacker how close a guess came.
//! - A malformed token and a wrong one are refused alike (the caller answers 401 to both).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// What every token starts with, so that secret scanners and people recognise one.
pub const PREFIX: &str = "hrld_";
const SECRET_BYTES: usize = 32;
const ENCODED_CHARS: usize = (16 + SECRET_BYTES) * 4 / 3;

/// What a token may do (DESIGN.md, "HTTP API and console").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Enqueue only.
    Enqueue,
    /// Read only.
    Read,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Enqueue => "enqueue",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "enqueue" => Some(Role::Enqueue),
            "read" => Some(Role::Read),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A token as it is made: the text to hand out once, and the hash to store.
pub struct NewToken {
    pub id: Uuid,
    pub text: String,
    pub secret_hash: [u8; 32],
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A new token for row `id`, or why the random source failed.
pub fn generate(id: Uuid) -> Result<NewToken, String> {
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|e| format!("no random bytes for a token: {e}"))?;
    let mut raw = Vec::with_capacity(16 + SECRET_BYTES);
    raw.extend_from_slice(id.as_bytes());
    raw.extend_from_slice(&secret);
    Ok(NewToken {
        id,
        text: format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&raw)),
        secret_hash: hash(&secret),
    })
}

/// A presented token split into the id it names and its secret; `None` when it is not one.
pub struct Presented {
    pub id: Uuid,
    secret: [u8; SECRET_BYTES],
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

pub fn parse(text: &str) -> Option<Presented> {
    let encoded = text.strip_prefix(PREFIX)?;
    if encoded.len() != ENCODED_CHARS {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let (id, secret) = raw.split_at_checked(16)?;
    Some(Presented {
        id: Uuid::from_slice(id).ok()?,
        secret: secret.try_into().ok()?,
    })
}

impl Presented {
    /// Whether this token's secret is the one whose hash is `stored`, in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        let presented = hash(&self.secret);
        stored.len() == presented.len() && bool::from(presented.ct_eq(stored))
    }
}

fn hash(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_back_to_its_id_and_matches_its_hash() {
        let id = Uuid::now_v7();
        let token = generate(id).unwrap();
        assert!(token.text.starts_with(PREFIX));
        assert_eq!(token.text.len(), PREFIX.len() + ENCODED_CHARS);
        let presented = parse(&token.text).unwrap();
        assert_eq!(presented.id, id);
        assert!(presented.matches(&token.secret_hash));
    }

    #[test]
    fn two_tokens_of_one_id_have_different_secrets() {
        let id = Uuid::now_v7();
        let (a, b) = (generate(id).unwrap(), generate(id).unwrap());
        assert_ne!(a.text, b.text);
        assert!(!parse(&a.text).unwrap().matches(&b.secret_hash));
    }

    #[test]
    fn a_changed_character_no_longer_matches() {
        let token = generate(Uuid::now_v7()).unwrap();
        let last = token.text.len() - 2;
        let mut changed = token.text.clone();
        let replaced = if &changed[last..last + 1] == "A" {
            "B"
        } else {
            "A"
        };
        changed.replace_range(last..last + 1, replaced);
        let presented = parse(&changed).expect("still well formed");
        assert!(!presented.matches(&token.secret_hash));
    }

    #[test]
    fn malformed_tokens_are_not_tokens() {
        let good = generate(Uuid::now_v7()).unwrap().text;
        for bad in [
            String::new(),
            "hrld_".to_owned(),
            good.trim_start_matches(PREFIX).to_owned(),
            format!("{good}A"),
            good[..good.len() - 1].to_owned(),
            good.replace(PREFIX, "HRLD_"),
            format!("{PREFIX}{}", "!".repeat(ENCODED_CHARS)),
            format!("{PREFIX}{}", "é".repeat(ENCODED_CHARS / 2)),
        ] {
            assert!(parse(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_hash_of_another_length_never_matches() {
        let token = generate(Uuid::now_v7()).unwrap();
        let presented = parse(&token.text).unwrap();
        assert!(!presented.matches(&token.secret_hash[..31]));
        assert!(!presented.matches(&[]));
    }

    #[test]
    fn roles_round_trip_and_nothing_else_is_one() {
        for role in [Role::Enqueue, Role::Read, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for bad in ["", "Admin", "owner", "admin "] {
            assert_eq!(Role::parse(bad), None);
        }
    }
}
