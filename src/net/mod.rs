//! Network safety: the SSRF guard for outgoing deliveries, and the bounded server that incoming
//! connections (`metrics.listen`) are served by.

pub mod bounded_server;
pub mod ssrf;
