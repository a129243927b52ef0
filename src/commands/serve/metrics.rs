//! `GET /metrics`: what the server did, in Prometheus' text format (through the `prometheus` crate),
//! for a scraper or a glance with curl.
//!
//! | metric | what |
//! |---|---|
//! | `modernft_requests_total{route,status}` | requests answered, by route (`unmatched` for none) and HTTP status |
//! | `modernft_request_duration_seconds{route}` | from the request's arrival to its answer |
//! | `modernft_queue_duration_seconds` | a request's wait in the queue before its batch ran |
//! | `modernft_inference_duration_seconds` | one batch's forward passes |
//! | `modernft_batch_rows`, `modernft_batch_tokens` | inputs and tokens per batch |
//! | `modernft_request_tokens` | tokens per request sent to the model |
//! | `modernft_input_tokens_total` | tokens sent to the model, all requests |
//! | `modernft_queue_requests` | requests waiting for the model now |
//! | `modernft_requests_in_flight` | requests holding a `--max-concurrent-requests` permit now |

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::error::Result;

/// The server's counters and histograms, registered once.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub queue_duration: Histogram,
    pub inference_duration: Histogram,
    pub batch_rows: Histogram,
    pub batch_tokens: Histogram,
    pub request_tokens: Histogram,
    pub input_tokens: IntCounter,
    pub queued: IntGauge,
    pub in_flight: IntGauge,
}

/// `start`, `start × factor`, … (`count` bounds).
fn exponential(start: f64, factor: f64, count: usize) -> Vec<f64> {
    (0..count).map(|i| start * factor.powi(i as i32)).collect()
}

fn failed(e: prometheus::Error) -> crate::error::Error {
    crate::err!("cannot set up the server's metrics: {e}")
}

impl Metrics {
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        // 1 ms … 32 s, and 1 … 1024 rows, 16 … 65,536 tokens: doubling bounds.
        let seconds = exponential(0.001, 2.0, 16);
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| -> Result<Histogram> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).map_err(failed)?;
            registry.register(Box::new(h.clone())).map_err(failed)?;
            Ok(h)
        };
        let requests = IntCounterVec::new(Opts::new("modernft_requests_total", "Requests answered, by route and HTTP status"), &["route", "status"]).map_err(failed)?;
        registry.register(Box::new(requests.clone())).map_err(failed)?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new("modernft_request_duration_seconds", "Time from a request's arrival to its answer, by route").buckets(seconds.clone()),
            &["route"],
        )
        .map_err(failed)?;
        registry.register(Box::new(request_duration.clone())).map_err(failed)?;
        let input_tokens = IntCounter::new("modernft_input_tokens_total", "Tokens sent to the model, all requests").map_err(failed)?;
        registry.register(Box::new(input_tokens.clone())).map_err(failed)?;
        let queued = IntGauge::new("modernft_queue_requests", "Requests waiting for the model").map_err(failed)?;
        registry.register(Box::new(queued.clone())).map_err(failed)?;
        let in_flight = IntGauge::new("modernft_requests_in_flight", "Requests holding a --max-concurrent-requests permit").map_err(failed)?;
        registry.register(Box::new(in_flight.clone())).map_err(failed)?;
        Ok(Metrics {
            queue_duration: histogram("modernft_queue_duration_seconds", "A request's wait in the queue before its batch ran", seconds.clone())?,
            inference_duration: histogram("modernft_inference_duration_seconds", "One batch's forward passes", seconds)?,
            batch_rows: histogram("modernft_batch_rows", "Inputs per batch", exponential(1.0, 2.0, 11))?,
            batch_tokens: histogram("modernft_batch_tokens", "Tokens per batch", exponential(16.0, 2.0, 13))?,
            request_tokens: histogram("modernft_request_tokens", "Tokens per request sent to the model", exponential(16.0, 2.0, 13))?,
            registry,
            requests,
            request_duration,
            input_tokens,
            queued,
            in_flight,
        })
    }

    /// One answered request.
    pub fn answered(&self, route: &str, status: u16, seconds: f64) {
        self.requests.with_label_values(&[route, &status.to_string()]).inc();
        self.request_duration.with_label_values(&[route]).observe(seconds);
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self) -> Result<String> {
        let mut text = String::new();
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text).map_err(failed)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histograms_render_in_the_text_format() {
        let m = Metrics::new().unwrap();
        m.answered("/embed", 200, 0.003);
        m.answered("/embed", 200, 0.5);
        m.answered("/embed", 413, 0.0001);
        m.batch_rows.observe(3.0);
        let text = m.render().unwrap();
        assert!(text.contains("# TYPE modernft_requests_total counter"), "{text}");
        assert!(text.contains("modernft_requests_total{route=\"/embed\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("modernft_requests_total{route=\"/embed\",status=\"413\"} 1"), "{text}");
        assert!(text.contains("modernft_request_duration_seconds_bucket{route=\"/embed\",le=\"0.004\"} 2"), "{text}");
        assert!(text.contains("modernft_request_duration_seconds_count{route=\"/embed\"} 3"), "{text}");
        assert!(text.contains("modernft_batch_rows_bucket{le=\"2\"} 0"), "{text}");
        assert!(text.contains("modernft_batch_rows_bucket{le=\"4\"} 1"), "{text}");
    }
}
