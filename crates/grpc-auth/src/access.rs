//! Which scope each RPC needs.
//!
//! | access     | granted by the scopes                                        | for |
//! |------------|--------------------------------------------------------------|-----|
//! | `Open`     | none (no token needed)                                       | health, reflection |
//! | `Read`     | `presence:read`, `presence:write`, `presence:admin`, `presence:internal` | queries and watches |
//! | `Write`    | `presence:write`, `presence:admin`                           | publishing on behalf of applications, watcher decisions |
//! | `Admin`    | `presence:admin`                                             | administrative changes (removing registrations), and any RPC the policy does not list |
//! | `Internal` | `presence:internal`                                          | the RPCs edges make on behalf of SIP clients they authenticated |
//!
//! `Internal` is deliberately not implied by `Admin`: the internal RPCs carry
//! identities the edge vouches for (the publisher of a PUBLISH, the watcher
//! of a SUBSCRIBE, the dialog an edge owns), so only an edge may call them;
//! an application with every application scope still cannot forge a SIP
//! client's request.

use std::collections::HashMap;

/// Scope granting read access.
pub const SCOPE_READ: &str = "presence:read";
/// Scope granting write (and read) access.
pub const SCOPE_WRITE: &str = "presence:write";
/// Scope granting administrative (and write and read) access.
pub const SCOPE_ADMIN: &str = "presence:admin";
/// Scope of edges calling the services on behalf of SIP clients.
pub const SCOPE_INTERNAL: &str = "presence:internal";

/// gRPC services that stay open whatever the configuration, so that load
/// balancers, orchestrators and `grpcurl` work without a token.
const OPEN_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The access an RPC requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// No token needed.
    Open,
    /// Queries.
    Read,
    /// Changes on behalf of applications.
    Write,
    /// Administrative changes.
    Admin,
    /// Calls of edges on behalf of the SIP clients they authenticated.
    Internal,
}

impl Access {
    /// The scopes any one of which grants this access.
    pub fn granted_by(self) -> &'static [&'static str] {
        match self {
            Access::Open => &[],
            Access::Read => &[SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN, SCOPE_INTERNAL],
            Access::Write => &[SCOPE_WRITE, SCOPE_ADMIN],
            Access::Admin => &[SCOPE_ADMIN],
            Access::Internal => &[SCOPE_INTERNAL],
        }
    }

    /// The scope to ask for when a caller lacks this access.
    pub fn scope(self) -> Option<&'static str> {
        match self {
            Access::Open => None,
            Access::Read => Some(SCOPE_READ),
            Access::Write => Some(SCOPE_WRITE),
            Access::Admin => Some(SCOPE_ADMIN),
            Access::Internal => Some(SCOPE_INTERNAL),
        }
    }

    /// Whether a caller holding `scopes` has this access.
    pub fn allows<S: AsRef<str>>(self, scopes: &[S]) -> bool {
        self == Access::Open
            || scopes
                .iter()
                .any(|s| self.granted_by().contains(&s.as_ref()))
    }
}

/// The access required by each RPC of the services one server hosts.
///
/// RPCs are named by their gRPC path (`/package.Service/Method`). An RPC the
/// policy does not list needs [`Access::Admin`], so a method added to a
/// `.proto` file is never open by accident.
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    methods: HashMap<String, Access>,
}

impl AccessPolicy {
    /// A policy listing no RPC yet (health and reflection are always open).
    pub fn new() -> Self {
        AccessPolicy::default()
    }

    /// Declares the access of `methods` of the fully qualified `service`
    /// (`"presence.v1.Presence"`).
    pub fn service(mut self, service: &str, methods: &[(&str, Access)]) -> Self {
        for (method, access) in methods {
            self.methods.insert(format!("/{service}/{method}"), *access);
        }
        self
    }

    /// The access the RPC at `path` requires.
    pub fn required(&self, path: &str) -> Access {
        if let Some(access) = self.methods.get(path) {
            return *access;
        }
        let service = path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .map(|(service, _)| service);
        match service {
            Some(service) if OPEN_SERVICES.contains(&service) => Access::Open,
            _ => Access::Admin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_grant_what_the_table_says() {
        assert!(Access::Read.allows(&["presence:read"]));
        assert!(Access::Read.allows(&["presence:internal"]));
        assert!(Access::Read.allows(&["openid", "presence:admin"]));
        assert!(!Access::Read.allows(&["sip:presence"]));
        assert!(!Access::Read.allows::<&str>(&[]));
        assert!(Access::Write.allows(&["presence:write"]));
        assert!(!Access::Write.allows(&["presence:read"]));
        assert!(!Access::Write.allows(&["presence:internal"]));
        assert!(Access::Admin.allows(&["presence:admin"]));
        assert!(!Access::Admin.allows(&["presence:write"]));
        assert!(Access::Internal.allows(&["presence:internal"]));
        assert!(!Access::Internal.allows(&["presence:admin"]));
        assert!(Access::Open.allows::<&str>(&[]));
    }

    #[test]
    fn unlisted_rpcs_need_admin_and_health_is_open() {
        let policy = AccessPolicy::new().service(
            "presence.v1.Presence",
            &[("GetPresence", Access::Read), ("Publish", Access::Internal)],
        );
        assert_eq!(
            policy.required("/presence.v1.Presence/GetPresence"),
            Access::Read
        );
        assert_eq!(
            policy.required("/presence.v1.Presence/Publish"),
            Access::Internal
        );
        assert_eq!(
            policy.required("/presence.v1.Presence/SomethingNew"),
            Access::Admin
        );
        assert_eq!(
            policy.required("/grpc.health.v1.Health/Check"),
            Access::Open
        );
        assert_eq!(
            policy.required("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Access::Open
        );
        assert_eq!(policy.required("garbage"), Access::Admin);
        assert_eq!(policy.required(""), Access::Admin);
    }
}
