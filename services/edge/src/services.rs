//! gRPC clients of the presence and registrar services, with a deadline on
//! every call, balanced over the services' replicas (`replicas.rs`), and
//! the translation of their errors into SIP responses.

use anyhow::Context;
use grpc_auth::ServiceCredentials;
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::registrar::v1::registrar_client::RegistrarClient;
use tonic::service::interceptor::InterceptedService;
use tonic::Code;

use crate::replicas::Replicas;
use crate::EdgeConfig;

/// Calls to a service's replicas, each carrying the edge's service token.
pub type ServiceChannel = InterceptedService<Replicas, ServiceCredentials>;

/// The services an edge calls. Cloning is cheap (shared channels).
#[derive(Clone)]
pub struct Services {
    pub presence: PresenceClient<ServiceChannel>,
    pub registrar: RegistrarClient<ServiceChannel>,
}

impl Services {
    /// Each URL setting names one or more replicas (comma-separated, host
    /// names followed in DNS). Connections are made lazily and again after
    /// a failure; a service that is down makes calls fail within the
    /// deadline, never hang.
    pub fn connect(config: &EdgeConfig) -> anyhow::Result<Self> {
        let presence = Replicas::new("presence", &config.presence_url, config.rpc_timeout)
            .context("presence service URLs")?;
        let registrar = Replicas::new("registrar", &config.registrar_url, config.rpc_timeout)
            .context("registrar service URLs")?;
        Ok(Services {
            presence: PresenceClient::with_interceptor(
                presence,
                config.service_credentials.clone(),
            ),
            registrar: RegistrarClient::with_interceptor(
                registrar,
                config.service_credentials.clone(),
            ),
        })
    }
}

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
    pub fn from_status(status: &tonic::Status, retry_after: u32) -> Self {
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
