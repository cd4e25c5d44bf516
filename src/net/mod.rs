//! Network safety: the SSRF guard for outgoing deliveries, and the bounded server that incoming
//! connections (`metrics.listen`, `api.listen`) are served by, with the probes both serve.

pub mod bounded_server;
pub mod probes;
pub mod ssrf;
