//! Property tests (proptest): for any input, canonical JSON, the SSRF
//! classifier, the retry schedule and template rendering keep their invariants and never
//! panic. Case counts stay modest so the suite stays fast.

mod canonical_json;
mod retry;
mod ssrf;
mod templates;

use proptest::prelude::ProptestConfig;

/// 256 cases per property: enough to find the edges these properties guard, quick to run.
pub fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}
