//! gRPC server metrics: every call's duration by method and status
//! (`grpc_server_duration_seconds`), recorded by a tower layer around the
//! server's routes, so no service has to remember it.
//!
//! The status is the `grpc-status` of a trailers-only response (how tonic
//! answers an error, and how the auth layer refuses) or `ok` when the
//! response starts normally; a streaming call counts when its response
//! starts. The method label is the request path for the first
//! [`MAX_METHODS`] distinct paths and `other` after, so a client inventing
//! paths cannot create series without end.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{LazyLock, Mutex};
use std::task::{Context, Poll};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Distinct method labels kept; every service of the cluster has fewer.
const MAX_METHODS: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

type Calls = Family<CallLabels, Histogram, fn() -> Histogram>;

fn calls() -> &'static Calls {
    static CALLS: LazyLock<Calls> = LazyLock::new(|| {
        telemetry::register(
            "grpc_server_duration_seconds",
            "gRPC calls served, by method and status, until the response starts.",
            Family::new_with_constructor(telemetry::latency_histogram),
        )
    });
    &CALLS
}

/// The label for `path`: the path itself, interned (leaked once; at most
/// [`MAX_METHODS`] of them), or `other`.
fn method_label(path: &str) -> &'static str {
    static SEEN: LazyLock<Mutex<HashSet<&'static str>>> =
        LazyLock::new(|| Mutex::new(HashSet::new()));
    let mut seen = locks::lock(&SEEN);
    if let Some(known) = seen.get(path) {
        return known;
    }
    if seen.len() >= MAX_METHODS {
        return "other";
    }
    let label: &'static str = Box::leak(path.to_owned().into_boxed_str());
    seen.insert(label);
    label
}

fn code_label(value: Option<&http::HeaderValue>) -> &'static str {
    match value.map(http::HeaderValue::as_bytes) {
        None | Some(b"0") => "ok",
        Some(b"1") => "cancelled",
        Some(b"3") => "invalid_argument",
        Some(b"4") => "deadline_exceeded",
        Some(b"5") => "not_found",
        Some(b"6") => "already_exists",
        Some(b"7") => "permission_denied",
        Some(b"8") => "resource_exhausted",
        Some(b"9") => "failed_precondition",
        Some(b"10") => "aborted",
        Some(b"12") => "unimplemented",
        Some(b"13") => "internal",
        Some(b"14") => "unavailable",
        Some(b"16") => "unauthenticated",
        Some(_) => "other",
    }
}

/// Tower layer recording `grpc_server_duration_seconds`; see
/// [`crate::grpc_server`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService { inner }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around a server's routes.
#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for GrpcMetricsService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = std::time::Instant::now();
        let span = server_span(method, request.headers());
        let response = {
            let _entered = span.enter();
            tracing::Instrument::instrument(self.inner.call(request), span.clone())
        };
        Box::pin(async move {
            let response = response.await;
            let code = match &response {
                Ok(response) => code_label(response.headers().get("grpc-status")),
                Err(_) => "transport_error",
            };
            calls()
                .get_or_create(&CallLabels { method, code })
                .observe(started.elapsed().as_secs_f64());
            response
        })
    }
}

/// The span of one call (when traces are exported; none otherwise), a
/// child of the caller's span when the request carries `traceparent`.
fn server_span(method: &'static str, headers: &http::HeaderMap) -> tracing::Span {
    if !telemetry::traces::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc"
    );
    telemetry::traces::set_parent(&span, telemetry::traces::extract_headers(headers));
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(
            method_label("/presence.v1.Presence/Publish"),
            "/presence.v1.Presence/Publish"
        );
        for n in 0..(2 * MAX_METHODS) {
            let _ = method_label(&format!("/x/{n}"));
        }
        assert_eq!(method_label("/never/seen/before"), "other");
        assert_eq!(
            method_label("/presence.v1.Presence/Publish"),
            "/presence.v1.Presence/Publish"
        );
    }

    #[test]
    fn status_codes_are_named() {
        assert_eq!(code_label(None), "ok");
        assert_eq!(
            code_label(Some(&http::HeaderValue::from_static("14"))),
            "unavailable"
        );
        assert_eq!(
            code_label(Some(&http::HeaderValue::from_static("99"))),
            "other"
        );
    }
}
