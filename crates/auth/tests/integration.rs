//! The crate's integration tests, linked as one binary (one module per
//! concern) so a workspace test build stays small and quick to link.

mod cache;
mod digest;
mod identity_scope;
mod introspection;
mod jwt;
mod peers;
mod robustness;
mod rotation;
