//! herald's HTTP API (`herald serve`): tokens first; the server follows.

pub mod token;
