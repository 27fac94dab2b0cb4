//! The edge's service calls answered in this process: the presence and
//! registrar services are called directly, behind the same interfaces the
//! edge uses over gRPC (`edge::services::{PresenceApi, RegistrarApi}`).
//!
//! Nothing is encoded and no socket is crossed, so a request costs the
//! node what its logic costs. The gRPC API stays served for applications.
//! The edge is this process's own, so its calls need no service token; the
//! deadline of a remote call still applies (the backend may be Redis).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use edge::services::{PresenceApi, RegistrarApi};
use presence::grpc::PresenceService;
use registrar::grpc::RegistrarService;
use rpc::presence::v1 as presence_pb;
use rpc::presence::v1::presence_server::Presence as _;
use rpc::registrar::v1 as registrar_pb;
use rpc::registrar::v1::registrar_server::Registrar as _;
use tonic::{Request, Response, Status};

/// The presence service, called in-process.
pub struct LocalPresence {
    pub service: Arc<PresenceService>,
    pub deadline: Duration,
}

/// The registrar service, called in-process.
pub struct LocalRegistrar {
    pub service: Arc<RegistrarService>,
    pub deadline: Duration,
}

/// Runs one call under the deadline a gRPC call would have had.
async fn call<T>(
    deadline: Duration,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result.map(Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded("service call timed out")),
    }
}

/// Implements each listed RPC by calling the service's own handler.
macro_rules! local_rpcs {
    ($ty:ty, $api:path, $($rpc:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl $api for $ty {
            $(
                async fn $rpc(&self, request: $req) -> Result<$resp, Status> {
                    call(self.deadline, self.service.$rpc(Request::new(request))).await
                }
            )*
        }
    };
}

local_rpcs!(LocalPresence, PresenceApi,
    publish(presence_pb::PublishRequest) -> presence_pb::PublishResponse;
    get_presence(presence_pb::GetPresenceRequest) -> presence_pb::PresenceState;
    subscribe(presence_pb::SubscribeRequest) -> presence_pb::SubscribeResponse;
    unsubscribe(presence_pb::UnsubscribeRequest) -> presence_pb::UnsubscribeResponse;
    renew_lease(presence_pb::RenewLeaseRequest) -> presence_pb::RenewLeaseResponse;
    restore_dialogs(presence_pb::RestoreDialogsRequest) -> presence_pb::RestoreDialogsResponse;
    claim_dialogs(presence_pb::ClaimDialogsRequest) -> presence_pb::ClaimDialogsResponse;
);

local_rpcs!(LocalRegistrar, RegistrarApi,
    register(registrar_pb::RegisterRequest) -> registrar_pb::RegisterResponse;
    lookup(registrar_pb::LookupRequest) -> registrar_pb::LookupResponse;
);
