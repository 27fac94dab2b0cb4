//! The system tests: the real binaries, a real redis-server, real SIP over
//! sockets, the project's own containers. One module per concern, linked as
//! one binary: sixteen test binaries against tonic, rustls and
//! testcontainers cost minutes of linking and gigabytes of disk.
//!
//! Run one concern with a filter, e.g.
//! `cargo test -p cluster-tests --test system takeover:: -- --nocapture`.

mod auth_support;
mod phones_support;
mod transport_support;

mod auth;
mod auth_digest;
mod auth_peers;
mod auth_sipp;
mod containers_edges;
mod containers_redis;
mod containers_replicas;
mod expiry;
mod fuzz_edge;
mod grpc_api;
mod internal_tls;
mod limits_edge;
mod limits_presence;
mod loadkit_loadgen;
mod loadkit_sipp;
mod node;
mod observe;
mod phones;
mod presence_rules;
mod presence_semantics;
mod presencectl;
mod redis_cluster;
mod registrar_edge_cases;
mod replicas;
mod sipp;
mod spine;
mod state_loss;
mod takeover;
mod transactions;
mod transports;
