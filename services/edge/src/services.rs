//! gRPC clients of the presence and registrar services, with a deadline on
//! every call, balanced over the services' replicas (`replicas.rs`), and
//! the translation of their errors into SIP responses.

use std::sync::Arc;

use anyhow::Context;
use grpc_auth::ServiceCredentials;
use rpc::presence::v1 as presence_pb;
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::registrar::v1 as registrar_pb;
use rpc::registrar::v1::registrar_client::RegistrarClient;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Status};

use crate::replicas::Replicas;
use crate::EdgeConfig;

/// Calls to a service's replicas, each carrying the edge's service token.
pub type ServiceChannel = InterceptedService<Replicas, ServiceCredentials>;

/// The presence RPCs an edge makes. Implemented over gRPC ([`GrpcPresence`])
/// and, in a single-process node, by the presence service itself called in
/// the same process: the edge's logic is the same either way, and the node
/// pays no HTTP/2, protobuf encoding or loopback socket per request.
#[tonic::async_trait]
pub trait PresenceApi: Send + Sync + 'static {
    async fn publish(
        &self,
        request: presence_pb::PublishRequest,
    ) -> Result<presence_pb::PublishResponse, Status>;
    async fn get_presence(
        &self,
        request: presence_pb::GetPresenceRequest,
    ) -> Result<presence_pb::PresenceState, Status>;
    async fn subscribe(
        &self,
        request: presence_pb::SubscribeRequest,
    ) -> Result<presence_pb::SubscribeResponse, Status>;
    async fn unsubscribe(
        &self,
        request: presence_pb::UnsubscribeRequest,
    ) -> Result<presence_pb::UnsubscribeResponse, Status>;
    async fn renew_lease(
        &self,
        request: presence_pb::RenewLeaseRequest,
    ) -> Result<presence_pb::RenewLeaseResponse, Status>;
    async fn restore_dialogs(
        &self,
        request: presence_pb::RestoreDialogsRequest,
    ) -> Result<presence_pb::RestoreDialogsResponse, Status>;
    async fn claim_dialogs(
        &self,
        request: presence_pb::ClaimDialogsRequest,
    ) -> Result<presence_pb::ClaimDialogsResponse, Status>;
}

/// The registrar RPCs an edge makes (see [`PresenceApi`]).
#[tonic::async_trait]
pub trait RegistrarApi: Send + Sync + 'static {
    async fn register(
        &self,
        request: registrar_pb::RegisterRequest,
    ) -> Result<registrar_pb::RegisterResponse, Status>;
    async fn lookup(
        &self,
        request: registrar_pb::LookupRequest,
    ) -> Result<registrar_pb::LookupResponse, Status>;
}

/// The services an edge calls. Cloning is cheap (shared handles).
#[derive(Clone)]
pub struct Services {
    pub presence: Arc<dyn PresenceApi>,
    pub registrar: Arc<dyn RegistrarApi>,
}

impl Services {
    /// Each URL setting names one or more replicas (comma-separated, host
    /// names followed in DNS). Connections are made lazily and again after
    /// a failure; a service that is down makes calls fail within the
    /// deadline, never hang.
    pub fn connect(config: &EdgeConfig) -> anyhow::Result<Self> {
        let tls = config.services_tls.clone();
        let presence = Replicas::new_with_tls(
            "presence",
            &config.presence_url,
            config.rpc_timeout,
            tls.clone(),
        )
        .context("presence service URLs")?;
        let registrar =
            Replicas::new_with_tls("registrar", &config.registrar_url, config.rpc_timeout, tls)
                .context("registrar service URLs")?;
        Ok(Services {
            presence: Arc::new(GrpcPresence(PresenceClient::with_interceptor(
                presence,
                config.service_credentials.clone(),
            ))),
            registrar: Arc::new(GrpcRegistrar(RegistrarClient::with_interceptor(
                registrar,
                config.service_credentials.clone(),
            ))),
        })
    }
}

/// [`PresenceApi`] over gRPC, balanced over the replicas.
pub struct GrpcPresence(pub PresenceClient<ServiceChannel>);

/// [`RegistrarApi`] over gRPC, balanced over the replicas.
pub struct GrpcRegistrar(pub RegistrarClient<ServiceChannel>);

/// Forwards each listed RPC to the generated client (a cheap clone per call:
/// the client's calls take `&mut self`).
macro_rules! forward_rpcs {
    ($ty:ty, $api:path, $($rpc:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl $api for $ty {
            $(
                async fn $rpc(&self, request: $req) -> Result<$resp, Status> {
                    let started = std::time::Instant::now();
                    let mut request = tonic::Request::new(request);
                    telemetry::traces::inject_metadata(request.metadata_mut());
                    let result = self.0.clone().$rpc(request).await.map(tonic::Response::into_inner);
                    crate::metrics::rpc(
                        stringify!($rpc),
                        result.as_ref().map(|_| ()).map_err(Status::code),
                        started.elapsed(),
                    );
                    result
                }
            )*
        }
    };
}

forward_rpcs!(GrpcPresence, PresenceApi,
    publish(presence_pb::PublishRequest) -> presence_pb::PublishResponse;
    get_presence(presence_pb::GetPresenceRequest) -> presence_pb::PresenceState;
    subscribe(presence_pb::SubscribeRequest) -> presence_pb::SubscribeResponse;
    unsubscribe(presence_pb::UnsubscribeRequest) -> presence_pb::UnsubscribeResponse;
    renew_lease(presence_pb::RenewLeaseRequest) -> presence_pb::RenewLeaseResponse;
    restore_dialogs(presence_pb::RestoreDialogsRequest) -> presence_pb::RestoreDialogsResponse;
    claim_dialogs(presence_pb::ClaimDialogsRequest) -> presence_pb::ClaimDialogsResponse;
);

forward_rpcs!(GrpcRegistrar, RegistrarApi,
    register(registrar_pb::RegisterRequest) -> registrar_pb::RegisterResponse;
    lookup(registrar_pb::LookupRequest) -> registrar_pb::LookupResponse;
);

/// A refused or failed service call, as the SIP response it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// Reason phrase; the status code's default when `None`.
    pub reason: Option<String>,
    /// For 423: the minimum interval (Min-Expires).
    pub min_expires: Option<u32>,
    /// For 503: Retry-After seconds.
    pub retry_after: Option<u32>,
}

impl Refusal {
    pub fn new(status: u16) -> Self {
        Refusal {
            status,
            reason: None,
            min_expires: None,
            retry_after: None,
        }
    }

    pub fn with_reason(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            reason: Some(reason.into()),
            ..Refusal::new(status)
        }
    }

    /// 503 with Retry-After: a backend or service cannot be reached.
    pub fn unavailable(retry_after: u32) -> Self {
        Refusal {
            retry_after: Some(retry_after),
            ..Refusal::new(503)
        }
    }

    /// Maps a gRPC status (per the codes documented in the .proto files).
    pub fn from_status(status: &Status, retry_after: u32) -> Self {
        if status.metadata().get("www-authenticate").is_some() {
            // The service refused this edge's own token: a configuration
            // fault of the cluster, not the phone's, so no 401/403 that
            // would make the phone ask its user for other credentials.
            tracing::error!(code = ?status.code(), message = status.message(), "a service refused this edge's service token (see --service-token*)");
            return Refusal::with_reason(500, "Service Authentication Failed");
        }
        match status.code() {
            Code::FailedPrecondition => Refusal::new(412),
            Code::OutOfRange => Refusal {
                min_expires: status
                    .metadata()
                    .get("min-expires")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
                ..Refusal::new(423)
            },
            Code::InvalidArgument => Refusal::with_reason(400, first_line(status.message())),
            Code::NotFound => Refusal::new(481),
            Code::Aborted => Refusal::new(500),
            Code::Unimplemented => Refusal::new(415),
            Code::PermissionDenied => Refusal::new(403),
            Code::Unauthenticated => Refusal::new(401),
            // A per-client limit of the service (README, Limits): 503 with
            // Retry-After, since the slot frees when something of the
            // client's ends, and the limit as the reason phrase.
            Code::ResourceExhausted => Refusal {
                reason: Some(first_line(status.message())),
                ..Refusal::unavailable(retry_after)
            },
            _ => Refusal::unavailable(retry_after),
        }
    }
}

/// A reason phrase must be one line of text.
fn first_line(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or("Bad Request")
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect()
}
