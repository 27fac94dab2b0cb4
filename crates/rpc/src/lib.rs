//! gRPC messages and service stubs of the presence cluster.
//!
//! Generated at build time from `proto/`. Services keep their logic in plain
//! Rust types and convert at this boundary only.

/// `presence.v1`: compositor, subscriptions, presence queries.
pub mod presence {
    pub mod v1 {
        tonic::include_proto!("presence.v1");
    }
}

/// `registrar.v1`: bindings of addresses-of-record.
pub mod registrar {
    pub mod v1 {
        tonic::include_proto!("registrar.v1");
    }
}

/// Serialized file descriptors, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
