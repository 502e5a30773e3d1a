//! Telemetry: JSON (or pretty) logs through `tracing`, OpenTelemetry traces exported over
//! OTLP when `telemetry.otlp_endpoint` is set, W3C trace context for messages, and the
//! Prometheus recorder behind `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, TelemetrySettings};

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether traces are exported (hot paths skip spans nobody will see otherwise).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static UPKEEP: std::sync::Once = std::sync::Once::new();
    let handle = PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref();
    // Histogram samples wait in per-metric buckets until drained: a scrape drains them, and
    // so does this upkeep, which keeps memory bounded when nothing scrapes.
    UPKEEP.call_once(|| {
        if let Some(h) = handle {
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    h.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
        }
    });
    handle
}

/// The current metrics in Prometheus text format.
pub fn render_metrics() -> String {
    metrics_handle().map(|h| h.render()).unwrap_or_default()
}

/// Keeps the tracer provider so telemetry can be flushed at shutdown.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                tracing::warn!(error = %e, "telemetry flush failed");
            }
        }
    }
}

/// Sets up logging and tracing for the process. Calling it again (tests) is harmless: the
/// first subscriber stays.
pub fn init(settings: &TelemetrySettings, service_name: &str) -> anyhow::Result<Telemetry> {
    let _ = metrics_handle();
    let filter = EnvFilter::try_new(&settings.log_level)
        .map_err(|e| anyhow::anyhow!("settings: `telemetry.log_level` is invalid: {e}"))?;
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_string())
            .build(),
    );
    let exporting = settings.otlp_endpoint.is_some();
    if let Some(endpoint) = &settings.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.as_str())
            .build()
            .map_err(|e| anyhow::anyhow!("telemetry: OTLP exporter for {endpoint}: {e}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    // The OpenTelemetry layer costs a few microseconds per span; only pay it when exporting.
    let otel = exporting
        .then(|| tracing_opentelemetry::layer().with_tracer(provider.tracer("feishu-bridge")));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = match settings.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .try_init()
            .is_ok(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer())
            .try_init()
            .is_ok(),
    };
    if installed {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        if exporting {
            EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
            opentelemetry::global::set_tracer_provider(provider.clone());
        }
    }
    Ok(Telemetry {
        provider: installed.then_some(provider),
    })
}

/// The W3C `traceparent` of the current span; a fresh random one when no trace is active, so
/// every message carries one.
pub fn current_traceparent() -> String {
    if !exporting() {
        // No trace is exported, so no span carries one: skip the span lookup (a few per cent
        // of the ingress's CPU per event).
        return random_traceparent();
    }
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid() {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    } else {
        random_traceparent()
    }
}

/// A `traceparent` with random trace and span ids, not sampled.
fn random_traceparent() -> String {
    let mut ids = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut ids);
    let mut hex = [0u8; 48];
    // Cannot fail: the output is exactly twice the input.
    let _ = hex::encode_to_slice(ids, &mut hex);
    let hex = std::str::from_utf8(&hex).unwrap_or_default();
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    out.push_str(&hex[..32]);
    out.push('-');
    out.push_str(&hex[32..]);
    out.push_str("-00");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untraced_traceparent_is_well_formed_and_fresh() {
        let a = current_traceparent();
        let b = current_traceparent();
        assert_ne!(a, b, "each message gets ids of its own");
        for tp in [&a, &b] {
            let parts: Vec<&str> = tp.split('-').collect();
            assert_eq!(parts.len(), 4, "{tp}");
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1].len(), 32, "{tp}");
            assert_eq!(parts[2].len(), 16, "{tp}");
            assert_eq!(parts[3], "00", "not sampled: {tp}");
            assert!(tp[3..].bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
            assert!(
                parts[1].bytes().any(|c| c != b'0') && parts[2].bytes().any(|c| c != b'0'),
                "W3C forbids all-zero ids: {tp}"
            );
            assert!(
                !tp.bytes().any(|c| c.is_ascii_uppercase()),
                "lowercase hex: {tp}"
            );
        }
    }
}
