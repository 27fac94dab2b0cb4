//! The crate's integration tests, linked as one binary (one module per
//! concern) so a workspace test build stays small and quick to link.

mod compose;
mod fixtures;
mod proptests;
mod security;
mod status;
mod watcherinfo;
