//! `presence-node`: the whole presence service in one process, and the
//! multi-call binary of the container image.
//!
//! * [`command`] — the node's command line and what it runs.
//! * `local` — the presence and registrar services called in-process.

mod local;

pub mod command;
