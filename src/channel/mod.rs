//! Delivery channels and what they share.

pub mod signature;
