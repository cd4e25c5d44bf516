//! CSRF tokens: the value every state-changing form carries in its hidden `csrf` field.
//!
//! For a signed-in session the value is derived from the session's API token (HMAC-SHA256
//! keyed by the token's text over a fixed label, base64url): it needs no storage, changes when
//! the token does, and a page of another site can neither read it (the cookie is HttpOnly and
//! the page is another origin) nor compute it. For the sign-in form, which has no session yet,
//! it is a random nonce in a short-lived cookie of its own (double submit): a sign-in posted
//! from another site carries no such cookie (SameSite=Strict) and is refused.
//!
//! Invariant: a presented value is compared in constant time, and an absent one never matches.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// What the HMAC signs: naming its purpose, so the value is good for nothing else.
const LABEL: &[u8] = b"herald console csrf v1";

/// The CSRF value of the session holding `token`.
pub fn for_session(token: &str) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes())
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(LABEL);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A fresh nonce for the sign-in form; `None` when the random source fails.
pub fn nonce() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `presented` is `expected`, in constant time; an empty value never matches.
pub fn matches(expected: &str, presented: Option<&str>) -> bool {
    match presented {
        Some(presented) if !presented.is_empty() && !expected.is_empty() => {
            bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_stable_per_token_and_differs_between_tokens() {
        assert_eq!(for_session("hrld_a"), for_session("hrld_a"));
        assert_ne!(for_session("hrld_a"), for_session("hrld_b"));
        assert_eq!(for_session("hrld_a").len(), 43);
        assert!(!for_session("hrld_a").contains("hrld"));
    }

    #[test]
    fn only_the_exact_value_matches() {
        let expected = for_session("hrld_a");
        assert!(matches(&expected, Some(&expected)));
        assert!(!matches(&expected, None));
        assert!(!matches(&expected, Some("")));
        assert!(!matches(&expected, Some(&expected[1..])));
        assert!(!matches(&expected, Some(&for_session("hrld_b"))));
        assert!(!matches("", Some("")));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }
}
