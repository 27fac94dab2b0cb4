//! The HTTP endpoint an operator's Prometheus and Kubernetes probes use:
//!
//! * `GET /metrics` — every registered metric, OpenMetrics text.
//! * `GET /livez` — 200 while the process answers.
//! * `GET /readyz` — 200 when ready, else 503 with the reasons, one per line.
//!
//! HTTP/1.1 only, no TLS: it is meant for the pod network, where the
//! NetworkPolicy lets only the monitoring namespace in.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Errors starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("binding the metrics endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running endpoint.
pub struct MetricsServer {
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves the endpoint until the returned server is
/// dropped.
pub async fn serve(addr: SocketAddr) -> Result<MetricsServer, HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    tracing::info!(listen = %local_addr, "metrics and health on HTTP");
    let task = tokio::spawn(accept(listener));
    Ok(MetricsServer { local_addr, task })
}

async fn accept(listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, typically: wait, do not spin.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(io, hyper::service::service_fn(route));
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics endpoint connection");
            }
        });
    }
}

async fn route(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET only\n".to_owned(),
        ));
    }
    let response = match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, crate::encode());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        "/livez" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => match crate::health().readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
            Err(reasons) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                reasons.iter().map(|reason| format!("{reason}\n")).collect(),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "try /metrics, /livez or /readyz\n".to_owned(),
        ),
    };
    Ok(response)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    #[tokio::test]
    async fn serves_metrics_liveness_and_readiness_over_a_real_socket() {
        let counter = crate::register(
            "http_test_scrapes",
            "Test counter.",
            prometheus_client::metrics::counter::Counter::<u64>::default(),
        );
        counter.inc();
        let server = serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        let metrics = get(server.local_addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("http_test_scrapes_total 1"), "{metrics}");
        assert!(get(server.local_addr, "/livez")
            .await
            .starts_with("HTTP/1.1 200"));
        assert!(get(server.local_addr, "/nope")
            .await
            .starts_with("HTTP/1.1 404"));

        crate::health().fail("http_test", "backend down");
        let not_ready = get(server.local_addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.contains("http_test: backend down"), "{not_ready}");
        crate::health().pass("http_test");
        assert!(get(server.local_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 200"));
    }
}
