//! The crate's integration tests, linked as one binary (one module per
//! concern) so a workspace test build stays small and quick to link.

mod common;

mod conformance;
mod memory;
mod open;
mod redis_cluster;
mod redis_outages;
