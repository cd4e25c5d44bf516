//! Network safety for outgoing deliveries.

pub mod ssrf;
