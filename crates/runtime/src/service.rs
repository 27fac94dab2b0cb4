//! The start-up skeleton of a gRPC service process (`presence`,
//! `registrar`): the order of the steps and their error messages live here
//! once, the flags and the service itself in each binary.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use store::Backend;

use crate::{GrpcServerTlsArgs, MetricsArgs, RedisTlsArgs};

/// What a service process needs from its command line to start.
pub struct ServiceStart<'a> {
    /// The service's name, for the log.
    pub name: &'static str,
    /// The gRPC listening address.
    pub listen: SocketAddr,
    /// `--redis-url`; `None` is the in-memory backend.
    pub redis_url: Option<&'a str>,
    /// `--min-expires` and `--max-expires`, checked before anything starts.
    pub expires: (u32, u32),
    /// `--redis-ca-file` and friends.
    pub redis_tls: &'a RedisTlsArgs,
    /// `--grpc-cert-file` and friends.
    pub grpc_tls: &'a GrpcServerTlsArgs,
    /// `--metrics-listen`.
    pub metrics: &'a MetricsArgs,
}

/// Everything started for a service, handed to its `serve`.
pub struct ServiceParts<A> {
    /// The state backend (Redis, or in memory).
    pub backend: Arc<dyn Backend>,
    /// The authentication of the gRPC API.
    pub auth: A,
    /// The bound gRPC listener.
    pub listener: tokio::net::TcpListener,
    /// TLS of the gRPC listener, when configured.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

impl ServiceStart<'_> {
    /// Starts a service: checks the expiry range, serves metrics, connects
    /// the backend (waiting for Redis), sets up the API authentication
    /// (`auth`, which may wait for the identity provider), and only then
    /// binds the gRPC port — so nothing accepts calls it cannot answer —
    /// and runs `serve` until it returns. The metrics endpoint lives as long
    /// as `serve` runs.
    pub async fn run<A, E, Auth, Serve, Served>(
        self,
        auth: Auth,
        serve: Serve,
    ) -> anyhow::Result<()>
    where
        Auth: Future<Output = Result<A, E>>,
        E: std::error::Error + Send + Sync + 'static,
        Serve: FnOnce(ServiceParts<A>) -> Served,
        Served: Future<Output = anyhow::Result<()>>,
    {
        let (min, max) = self.expires;
        crate::check_expires_range("--min-expires", min, "--max-expires", max)?;
        let _metrics = self.metrics.serve().await?;
        let backend = crate::backend(self.redis_url, self.redis_tls).await?;
        let auth = auth.await.context("setting up gRPC authentication")?;
        let tls = self.grpc_tls.config()?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("binding {}", self.listen))?;
        tracing::info!(listen = %self.listen, "{} serving gRPC", self.name);
        serve(ServiceParts {
            backend,
            auth,
            listener,
            tls,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> std::io::Error {
        std::io::Error::other("provider says no")
    }

    fn free_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn an_impossible_expiry_range_stops_before_anything_starts() {
        let (redis_tls, grpc_tls) = (RedisTlsArgs::default(), GrpcServerTlsArgs::default());
        let metrics = MetricsArgs {
            metrics_listen: None,
        };
        let start = ServiceStart {
            name: "test",
            listen: free_port(),
            redis_url: None,
            expires: (600, 60),
            redis_tls: &redis_tls,
            grpc_tls: &grpc_tls,
            metrics: &metrics,
        };
        let error = start
            .run(async { Ok::<_, std::io::Error>(()) }, |_| async {
                panic!("served despite the error")
            })
            .await
            .unwrap_err();
        assert!(error.to_string().contains("--min-expires"), "{error:#}");
    }

    #[tokio::test]
    async fn the_port_is_bound_only_once_authentication_is_ready() {
        let (redis_tls, grpc_tls) = (RedisTlsArgs::default(), GrpcServerTlsArgs::default());
        let metrics = MetricsArgs {
            metrics_listen: None,
        };
        let listen = free_port();
        let start = || ServiceStart {
            name: "test",
            listen,
            redis_url: None,
            expires: (60, 600),
            redis_tls: &redis_tls,
            grpc_tls: &grpc_tls,
            metrics: &metrics,
        };
        let error = start()
            .run(async { Err::<(), _>(refused()) }, |_| async {
                panic!("served despite the error")
            })
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "setting up gRPC authentication");
        assert!(std::net::TcpStream::connect(listen).is_err());

        let served = start()
            .run(async { Ok::<_, std::io::Error>(7) }, |parts| async move {
                assert_eq!(parts.auth, 7);
                assert_eq!(parts.listener.local_addr()?, listen);
                assert!(parts.tls.is_none());
                Ok(())
            })
            .await;
        assert!(served.is_ok(), "{served:?}");
    }
}
