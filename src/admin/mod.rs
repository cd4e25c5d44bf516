//! What operators ask herald, answered once for every face that asks: the admin CLI, the HTTP
//! API and the console render these answers; none of them computes its own.
//!
//! Invariant: nothing here writes; each answer is read from the database as it stands.

pub mod explain;
pub mod stats;
