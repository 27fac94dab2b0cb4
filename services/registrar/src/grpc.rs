//! `registrar.v1` over gRPC: converts messages to [`RegisterCommand`] and back,
//! and maps [`RegisterError`] to status codes the edge turns into SIP responses.

use std::collections::HashSet;

use contract::now_ms;
use grpc_auth::{Access, AccessPolicy};
use rpc::registrar::v1 as pb;
use tonic::{Request, Response, Status};

use crate::{Binding, ContactUpdate, RegisterCommand, RegisterError, Registrar};

/// The fully qualified name of the service.
pub const SERVICE: &str = "registrar.v1.Registrar";

/// Every RPC of `registrar.v1.Registrar` with the access it requires:
/// REGISTER comes from edges on behalf of the phones they authenticated;
/// reading bindings is a query; removing them is administrative.
pub const RPC_ACCESS: &[(&str, Access)] = &[
    ("Register", Access::Internal),
    ("Lookup", Access::Read),
    ("ListBindings", Access::Read),
    ("Unregister", Access::Admin),
];

/// Most AORs in one ListBindings.
pub const MAX_LIST: usize = 1000;

/// The access policy of a registrar server.
pub fn access_policy() -> AccessPolicy {
    AccessPolicy::new().service(SERVICE, RPC_ACCESS)
}

/// The gRPC face of a [`Registrar`].
pub struct RegistrarService {
    registrar: Registrar,
}

impl RegistrarService {
    pub fn new(registrar: Registrar) -> Self {
        RegistrarService { registrar }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::registrar_server::RegistrarServer<Self> {
        pb::registrar_server::RegistrarServer::new(self)
    }
}

fn to_pb(binding: &Binding, now: u64) -> pb::Binding {
    pb::Binding {
        uri: binding.uri.clone(),
        expires: binding.remaining_secs(now),
        q_milli: binding.q_milli,
        instance_id: binding.instance_id.clone(),
        reg_id: binding.reg_id,
        call_id: binding.call_id.clone(),
        cseq: binding.cseq,
        transport: binding.transport.clone(),
        source: binding.source.clone(),
        user_agent: binding.user_agent.clone(),
        expires_at_ms: binding.expires_at_ms,
    }
}

/// Maps registrar errors to gRPC status; 423 carries its minimum in metadata.
pub fn status_of(error: RegisterError) -> Status {
    match error {
        RegisterError::IntervalTooBrief { min_expires } => {
            let mut status =
                Status::out_of_range(format!("interval too brief; minimum {min_expires}s"));
            if let Ok(value) = min_expires.to_string().parse() {
                status.metadata_mut().insert("min-expires", value);
            }
            status
        }
        RegisterError::InvalidWildcard | RegisterError::MissingAor => {
            Status::invalid_argument(error.to_string())
        }
        // The edge turns INVALID_ARGUMENT into 400 with the message's first
        // line as the reason phrase (see `RegisterError::OutOfOrder`).
        RegisterError::OutOfOrder { .. } => Status::invalid_argument("CSeq out of order"),
        RegisterError::Store(e) => Status::unavailable(e.to_string()),
        RegisterError::Contended(_) => Status::unavailable(error.to_string()),
    }
}

#[tonic::async_trait]
impl pb::registrar_server::Registrar for RegistrarService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        let command = RegisterCommand {
            aor: r.aor,
            contacts: r
                .contacts
                .into_iter()
                .map(|c| ContactUpdate {
                    uri: c.uri,
                    expires: c.expires,
                    q_milli: c.q_milli,
                    instance_id: c.instance_id,
                    reg_id: c.reg_id,
                })
                .collect(),
            remove_all: r.remove_all,
            call_id: r.call_id,
            cseq: r.cseq,
            transport: r.transport,
            source: r.source,
            user_agent: r.user_agent,
        };
        let now = now_ms();
        let bindings = self.registrar.register(&command, now).await.map_err(|e| {
            tracing::warn!(aor = %command.aor, error = %e, "REGISTER refused");
            status_of(e)
        })?;
        Ok(Response::new(pb::RegisterResponse {
            bindings: bindings.iter().map(|b| to_pb(b, now)).collect(),
        }))
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        let aor = request.into_inner().aor;
        let now = now_ms();
        let bindings = self
            .registrar
            .lookup(&aor, now)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::LookupResponse {
            bindings: bindings.iter().map(|b| to_pb(b, now)).collect(),
        }))
    }

    async fn list_bindings(
        &self,
        request: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        let mut seen = HashSet::new();
        let aors: Vec<String> = request
            .into_inner()
            .aors
            .into_iter()
            .filter(|aor| seen.insert(aor.clone()))
            .collect();
        if aors.is_empty() || aors.iter().any(String::is_empty) {
            return Err(Status::invalid_argument(
                "one or more non-empty AORs are required",
            ));
        }
        if aors.len() > MAX_LIST {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_LIST} AORs per call"
            )));
        }
        let now = now_ms();
        let found = self
            .registrar
            .lookup_many(&aors, now)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::ListBindingsResponse {
            aors: aors
                .into_iter()
                .zip(found)
                .map(|(aor, bindings)| pb::AorBindings {
                    aor,
                    bindings: bindings.iter().map(|b| to_pb(b, now)).collect(),
                })
                .collect(),
        }))
    }

    async fn unregister(
        &self,
        request: Request<pb::UnregisterRequest>,
    ) -> Result<Response<pb::UnregisterResponse>, Status> {
        let r = request.into_inner();
        let contact = (!r.contact.is_empty()).then_some(r.contact.as_str());
        let now = now_ms();
        let removed = self
            .registrar
            .unregister(&r.aor, contact, now)
            .await
            .map_err(|e| {
                tracing::info!(aor = %r.aor, error = %e, "Unregister refused");
                status_of(e)
            })?;
        tracing::info!(aor = %r.aor, contact = ?contact, removed = removed.len(), "administrative unregistration");
        Ok(Response::new(pb::UnregisterResponse {
            removed: removed.iter().map(|b| to_pb(b, now)).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pb::registrar_server::Registrar as _;
    use prost::Message;

    use super::*;
    use crate::RegistrarConfig;

    fn service() -> RegistrarService {
        RegistrarService::new(Registrar::new(
            Arc::new(store::memory::MemoryBackend::new()),
            RegistrarConfig::default(),
        ))
    }

    async fn register(service: &RegistrarService, aor: &str, contacts: &[(&str, &str)]) {
        let result = service
            .register(Request::new(pb::RegisterRequest {
                aor: aor.into(),
                contacts: contacts
                    .iter()
                    .map(|(uri, instance)| pb::ContactUpdate {
                        uri: (*uri).into(),
                        expires: Some(600),
                        instance_id: (*instance).into(),
                        ..pb::ContactUpdate::default()
                    })
                    .collect(),
                call_id: format!("call-{aor}"),
                cseq: 1,
                ..pb::RegisterRequest::default()
            }))
            .await;
        assert!(result.is_ok(), "{result:?}");
    }

    async fn list(
        service: &RegistrarService,
        aors: &[&str],
    ) -> Result<Vec<(String, Vec<String>)>, Status> {
        let response = service
            .list_bindings(Request::new(pb::ListBindingsRequest {
                aors: aors.iter().map(|a| (*a).into()).collect(),
            }))
            .await?;
        Ok(response
            .into_inner()
            .aors
            .into_iter()
            .map(|a| (a.aor, a.bindings.into_iter().map(|b| b.uri).collect()))
            .collect())
    }

    #[tokio::test]
    async fn list_bindings_answers_every_aor_in_order() {
        let service = service();
        register(
            &service,
            "alice@example.com",
            &[("sip:alice@10.0.0.1", ""), ("sip:alice@10.0.0.2", "")],
        )
        .await;
        register(&service, "carol@example.com", &[("sip:carol@10.0.0.3", "")]).await;
        let listed = list(
            &service,
            &[
                "carol@example.com",
                "nobody@example.com",
                "alice@example.com",
                "carol@example.com",
            ],
        )
        .await;
        assert_eq!(
            listed.ok(),
            Some(vec![
                (
                    "carol@example.com".to_string(),
                    vec!["sip:carol@10.0.0.3".to_string()]
                ),
                ("nobody@example.com".to_string(), vec![]),
                (
                    "alice@example.com".to_string(),
                    vec![
                        "sip:alice@10.0.0.1".to_string(),
                        "sip:alice@10.0.0.2".to_string()
                    ]
                ),
            ])
        );
        assert_eq!(
            list(&service, &[]).await.err().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
        assert_eq!(
            list(&service, &[""]).await.err().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
        let too_many: Vec<String> = (0..=MAX_LIST)
            .map(|i| format!("u{i}@example.com"))
            .collect();
        let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
        assert_eq!(
            list(&service, &too_many).await.err().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
    }

    #[tokio::test]
    async fn unregister_removes_one_binding_by_uri_or_instance_or_all() {
        let service = service();
        register(
            &service,
            "alice@example.com",
            &[
                ("sip:alice@10.0.0.1", ""),
                (
                    "sip:alice@10.0.0.2",
                    "<urn:uuid:00000000-0000-1000-8000-000000000002>",
                ),
                ("sip:alice@10.0.0.3", ""),
            ],
        )
        .await;
        let unregister = |contact: &str| {
            service.unregister(Request::new(pb::UnregisterRequest {
                aor: "alice@example.com".into(),
                contact: contact.into(),
            }))
        };
        let removed = unregister("sip:alice@10.0.0.1")
            .await
            .map(|r| r.into_inner().removed.len());
        assert_eq!(removed.ok(), Some(1));
        let removed = unregister("<urn:uuid:00000000-0000-1000-8000-000000000002>")
            .await
            .map(|r| r.into_inner().removed);
        assert_eq!(
            removed
                .ok()
                .map(|r| r.into_iter().map(|b| b.uri).collect::<Vec<_>>()),
            Some(vec!["sip:alice@10.0.0.2".to_string()])
        );
        // Nothing matches any more: idempotent.
        let removed = unregister("sip:alice@10.0.0.1")
            .await
            .map(|r| r.into_inner().removed.len());
        assert_eq!(removed.ok(), Some(0));
        assert_eq!(
            list(&service, &["alice@example.com"]).await.ok(),
            Some(vec![(
                "alice@example.com".to_string(),
                vec!["sip:alice@10.0.0.3".to_string()]
            )])
        );
        let removed = unregister("").await.map(|r| r.into_inner().removed.len());
        assert_eq!(removed.ok(), Some(1));
        assert_eq!(
            list(&service, &["alice@example.com"]).await.ok(),
            Some(vec![("alice@example.com".to_string(), vec![])])
        );
        let missing_aor = service
            .unregister(Request::new(pb::UnregisterRequest::default()))
            .await;
        assert_eq!(
            missing_aor.err().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
    }

    #[test]
    fn every_rpc_of_the_proto_has_a_declared_access() {
        let descriptors = prost_types::FileDescriptorSet::decode(rpc::FILE_DESCRIPTOR_SET)
            .map_err(|e| e.to_string());
        assert!(descriptors.is_ok(), "{descriptors:?}");
        let methods: Vec<String> = descriptors
            .iter()
            .flat_map(|set| set.file.iter())
            .filter(|file| file.package() == "registrar.v1")
            .flat_map(|file| file.service.iter())
            .flat_map(|service| service.method.iter())
            .map(|method| method.name().to_string())
            .collect();
        assert!(methods.len() >= 4, "{methods:?}");
        for method in &methods {
            assert!(
                RPC_ACCESS.iter().any(|(name, _)| name == method),
                "registrar.v1.Registrar/{method} has no declared access"
            );
        }
    }
}
