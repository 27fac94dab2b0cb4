//! Bearer-token authentication of the presence cluster's gRPC APIs.
//!
//! * [`access`] — the scopes (`presence:read`, `presence:write`,
//!   `presence:admin`, `presence:internal`) and the access each RPC needs.
//! * [`server`] — [`ApiAuth`], a tower layer in front of a tonic server that
//!   validates tokens with [`auth::BearerValidator`] and checks scopes.
//! * [`client`] — [`ServiceCredentials`], the token an edge presents to the
//!   services, renewed in the background, attached by a tonic interceptor.
//! * [`args`] — the command-line flags of both.

#![warn(missing_docs)]

pub mod access;
pub mod args;
pub mod client;
pub mod server;

pub use access::{Access, AccessPolicy, SCOPE_ADMIN, SCOPE_INTERNAL, SCOPE_READ, SCOPE_WRITE};
pub use args::{api_bearer_config, ApiAuthArgs, BearerArgs, ServiceTokenArgs};
pub use client::{ClientCredentials, CredentialsError, ServiceCredentials, TokenSource};
pub use server::{ApiAuth, ApiAuthLayer, ApiAuthService, Caller};
