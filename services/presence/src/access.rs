//! The scope each `presence.v1` RPC requires when the gRPC API is
//! authenticated (see `grpc_auth::access` for what each scope grants).
//!
//! * SIP-driven RPCs (`Publish`, `Subscribe`, `Unsubscribe`) carry
//!   identities an edge authenticated, and the lease RPCs (`RenewLease`,
//!   `ClaimDialogs`, `RestoreDialogs`) move dialogs between edges, so only edges
//!   (`presence:internal`) may call them.
//! * Queries and watches need `presence:read`.
//! * Publishing for applications and deciding about watchers (rules,
//!   approving and rejecting) need `presence:write`; reading watchers and
//!   rules needs `presence:read`.

use grpc_auth::{Access, AccessPolicy};

/// The fully qualified name of the service.
pub const SERVICE: &str = "presence.v1.Presence";

/// Every RPC of `presence.v1.Presence` with the access it requires. A test
/// checks that no RPC of the `.proto` file is missing, so a new one is
/// never left to the default by accident.
pub const RPC_ACCESS: &[(&str, Access)] = &[
    ("Publish", Access::Internal),
    ("Subscribe", Access::Internal),
    ("Unsubscribe", Access::Internal),
    ("RenewLease", Access::Internal),
    ("ClaimDialogs", Access::Internal),
    ("RestoreDialogs", Access::Internal),
    ("GetPresence", Access::Read),
    ("BatchGetPresence", Access::Read),
    ("WatchPresence", Access::Read),
    ("SetPresence", Access::Write),
    ("ClearPresence", Access::Write),
    ("ListWatchers", Access::Read),
    ("GetRules", Access::Read),
    ("SetRules", Access::Write),
    ("ApproveWatcher", Access::Write),
    ("RejectWatcher", Access::Write),
];

/// The access policy of a presence server.
pub fn access_policy() -> AccessPolicy {
    AccessPolicy::new().service(SERVICE, RPC_ACCESS)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn every_rpc_of_the_proto_has_a_declared_access() {
        let descriptors = prost_types::FileDescriptorSet::decode(rpc::FILE_DESCRIPTOR_SET);
        let descriptors = descriptors.map_err(|e| e.to_string());
        assert!(descriptors.is_ok(), "{descriptors:?}");
        let methods: Vec<String> = descriptors
            .iter()
            .flat_map(|set| set.file.iter())
            .filter(|file| file.package() == "presence.v1")
            .flat_map(|file| file.service.iter())
            .filter(|service| service.name() == "Presence")
            .flat_map(|service| service.method.iter())
            .map(|method| method.name().to_string())
            .collect();
        assert!(methods.len() >= 5, "{methods:?}");
        for method in &methods {
            assert!(
                RPC_ACCESS.iter().any(|(name, _)| name == method),
                "presence.v1.Presence/{method} has no declared access in access.rs"
            );
        }
        for (name, _) in RPC_ACCESS {
            assert!(
                methods.contains(&name.to_string()),
                "{name} is not in the .proto"
            );
        }
    }
}
