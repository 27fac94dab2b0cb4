//! The crate's integration tests, linked as one binary (one module per
//! concern) so a workspace test build stays small and quick to link.
//! `allocation.rs` stays a binary of its own: it installs a counting global
//! allocator, which must not see the other tests' threads.

mod limits;
mod messages;
mod properties;
mod rfc4475;
mod rfc5118;
mod values;
