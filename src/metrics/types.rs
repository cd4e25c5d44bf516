//! The `type` label: notification types are chosen by applications, so their number has no
//! bound herald controls. Each process labels the first [`MAX_TYPES`] distinct types it sees
//! by name and counts every later one as [`OTHER`], so a runaway producer (a type per user, a
//! type with an id in it) cannot grow the exposition without limit.

use std::collections::HashSet;
use std::sync::RwLock;

/// Distinct type names per process before the rest are counted as [`OTHER`].
pub const MAX_TYPES: usize = 50;

/// The label of every type past the first [`MAX_TYPES`].
pub const OTHER: &str = "other";

#[derive(Debug, Default)]
pub struct TypeLabels {
    seen: RwLock<HashSet<String>>,
}

impl TypeLabels {
    /// `type_` itself while it is one of the first [`MAX_TYPES`] seen, else [`OTHER`].
    pub fn label(&self, type_: &str) -> String {
        // A poisoned lock only means a panic elsewhere while it was held; the set stays valid.
        let seen = self.seen.read().unwrap_or_else(|p| p.into_inner());
        if seen.contains(type_) {
            return type_.to_owned();
        }
        drop(seen);
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.contains(type_) || seen.len() < MAX_TYPES {
            seen.insert(type_.to_owned());
            return type_.to_owned();
        }
        OTHER.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_past_the_cap_are_other_and_the_first_keep_their_names() {
        let labels = TypeLabels::default();
        for i in 0..MAX_TYPES {
            assert_eq!(labels.label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(labels.label("one-too-many"), OTHER);
        assert_eq!(
            labels.label("t0"),
            "t0",
            "a type seen before keeps its name"
        );
        assert_eq!(labels.label(&format!("t{}", MAX_TYPES - 1)), "t49");
    }
}
