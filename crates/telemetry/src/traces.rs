//! OpenTelemetry traces, exported over OTLP/gRPC when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set; `OTEL_SERVICE_NAME` names the process (default: its command),
//! and the other `OTEL_*` variables of the SDK apply (`OTEL_BSP_*` for
//! batching).
//!
//! Off when no endpoint is set, and then free on the hot path: code that
//! would open a span asks [`enabled`] first (one relaxed atomic load) and
//! opens none.
//!
//! Context crosses processes as W3C `traceparent`: in gRPC metadata
//! ([`inject_metadata`], [`extract_headers`]) and inside the announcements
//! on Redis channels ([`current_traceparent`], [`remote_context`]), so one
//! trace shows a PUBLISH entering an edge, reaching the presence service,
//! and — linked — the NOTIFYs that other edges send for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: code opens spans only when they are.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Errors setting up the exporter.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("building the OTLP span exporter: {0}")]
    Exporter(String),
}

/// Keeps the exporter running; dropping it flushes the spans still queued.
#[derive(Default)]
pub struct TraceGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                tracing::debug!(error = %e, "flushing spans at exit");
            }
        }
    }
}

/// The `tracing` layer exporting spans, when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (or the traces-only variant) is set; `None` (and [`enabled`] false)
/// otherwise. Must be called inside a Tokio runtime: exports run on it.
pub fn otlp_layer<S>(
    default_service_name: &str,
) -> Result<
    (
        Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>,
        TraceGuard,
    ),
    TraceError,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    let runtime = tokio::runtime::Handle::try_current().ok();
    let (true, Some(runtime)) = (configured, runtime) else {
        return Ok((None, TraceGuard { provider: None }));
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| default_service_name.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(OnRuntime {
            inner: Arc::new(exporter),
            runtime,
        })
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("presence-cluster");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((
        Some(layer),
        TraceGuard {
            provider: Some(provider),
        },
    ))
}

/// The OTLP exporter, run on the process's Tokio runtime: the SDK's batch
/// processor exports from a thread of its own, where the gRPC client
/// would find no runtime to run on.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    e.to_string(),
                ))
            })
        }
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // Called while the provider is built, before any export shares the
        // exporter: the service name reaches every request.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Adds the current span's context to outgoing gRPC metadata (when
/// tracing is enabled).
pub fn inject_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The caller's trace context from incoming gRPC (HTTP/2) headers.
pub fn extract_headers(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The current span's context as a W3C `traceparent`, to carry where no
/// headers go (a Redis channel message); `None` when tracing is off or no
/// span is current.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// The span context a `traceparent` names (for a link), if valid.
pub fn remote_context(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::TraceContextExt;
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    let context = TraceContextPropagator::new().extract(&carrier);
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// Makes `span` a child of `parent` (a remote caller's context).
pub fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
    let _ = span.set_parent(parent);
}

/// Links `span` to the span `traceparent` names (the change that caused
/// it, in another trace).
pub fn link(span: &tracing::Span, traceparent: &str) {
    if let Some(context) = remote_context(traceparent) {
        span.add_link(context);
    }
}

/// The trace id of `span` (hex), for log lines.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_into_a_span_context() {
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context = remote_context(parent).expect("valid traceparent");
        assert_eq!(
            context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(context.span_id().to_string(), "b7ad6b7169203331");
        assert!(remote_context("garbage").is_none());
    }

    #[test]
    fn off_by_default_and_then_nothing_is_carried() {
        assert!(!enabled());
        assert_eq!(current_traceparent(), None);
        let mut metadata = tonic::metadata::MetadataMap::new();
        inject_metadata(&mut metadata);
        assert!(metadata.is_empty());
    }
}
