//! Counters and latency histograms, rendered in Prometheus' text format for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use super::lock;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 14] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A latency histogram: counts per bucket (not cumulative), the sum and the count.
#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| seconds <= b) {
            self.buckets[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Per (model, endpoint) figures.
#[derive(Default)]
struct Series {
    /// Requests by status code.
    by_status: BTreeMap<u16, u64>,
    rows: u64,
    latency: Histogram,
}

/// Per model compute figures.
#[derive(Default)]
struct Blocks {
    blocks: u64,
    jobs: u64,
    rows: u64,
    cache_bytes: usize,
}

/// Everything `/metrics` reports. Cheap to update from any thread.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String), Series>>,
    blocks: Mutex<BTreeMap<String, Blocks>>,
    reloads: Mutex<BTreeMap<(String, &'static str), u64>>,
    in_flight: AtomicI64,
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Records one answered request. `model` must be a served model's name or a fixed word
    /// (unknown names are reported as `unknown`, so clients cannot grow the label set).
    pub fn record_request(&self, model: &str, endpoint: &str, status: u16, rows: usize, elapsed: Duration) {
        let mut series = lock(&self.series);
        let s = series.entry((model.to_string(), endpoint.to_string())).or_default();
        *s.by_status.entry(status).or_default() += 1;
        s.rows += rows as u64;
        s.latency.observe(elapsed.as_secs_f64());
    }

    /// Records one computed block of `jobs` requests and `rows` rows.
    pub fn record_block(&self, model: &str, jobs: usize, rows: usize) {
        let mut blocks = lock(&self.blocks);
        let b = blocks.entry(model.to_string()).or_default();
        b.blocks += 1;
        b.jobs += jobs as u64;
        b.rows += rows as u64;
    }

    /// Records the bytes of recycled buffers a model's compute thread holds.
    pub fn set_cache_bytes(&self, model: &str, bytes: usize) {
        lock(&self.blocks).entry(model.to_string()).or_default().cache_bytes = bytes;
    }

    /// Records a reload attempt: `result` is `ok`, `unchanged` or `failed`.
    pub fn record_reload(&self, model: &str, result: &'static str) {
        *lock(&self.reloads).entry((model.to_string(), result)).or_default() += 1;
    }

    /// Adds `delta` to the requests in flight.
    pub fn add_in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every figure.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let series = lock(&self.series);
        out.push_str(
            "# HELP normflow_requests_total Requests answered, by model, endpoint and status.\n# TYPE normflow_requests_total counter\n",
        );
        for ((m, e), s) in series.iter() {
            for (status, n) in &s.by_status {
                let _ =
                    writeln!(out, "normflow_requests_total{{model=\"{}\",endpoint=\"{}\",status=\"{status}\"}} {n}", label(m), label(e));
            }
        }
        out.push_str("# HELP normflow_rows_total Rows in answered requests (samples for /sample).\n# TYPE normflow_rows_total counter\n");
        for ((m, e), s) in series.iter() {
            let _ = writeln!(out, "normflow_rows_total{{model=\"{}\",endpoint=\"{}\"}} {}", label(m), label(e), s.rows);
        }
        out.push_str("# HELP normflow_request_duration_seconds Time from a request's arrival to its answer.\n# TYPE normflow_request_duration_seconds histogram\n");
        for ((m, e), s) in series.iter() {
            let (m, e) = (label(m), label(e));
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(s.latency.buckets) {
                cumulative += n;
                let _ =
                    writeln!(out, "normflow_request_duration_seconds_bucket{{model=\"{m}\",endpoint=\"{e}\",le=\"{bound}\"}} {cumulative}");
            }
            let _ =
                writeln!(out, "normflow_request_duration_seconds_bucket{{model=\"{m}\",endpoint=\"{e}\",le=\"+Inf\"}} {}", s.latency.count);
            let _ = writeln!(out, "normflow_request_duration_seconds_sum{{model=\"{m}\",endpoint=\"{e}\"}} {}", s.latency.sum);
            let _ = writeln!(out, "normflow_request_duration_seconds_count{{model=\"{m}\",endpoint=\"{e}\"}} {}", s.latency.count);
        }
        drop(series);
        let blocks = lock(&self.blocks);
        out.push_str(
            "# HELP normflow_blocks_total Blocks computed (coalesced requests count once).\n# TYPE normflow_blocks_total counter\n",
        );
        for (m, b) in blocks.iter() {
            let _ = writeln!(out, "normflow_blocks_total{{model=\"{}\"}} {}", label(m), b.blocks);
        }
        out.push_str(
            "# HELP normflow_batched_requests_total Requests computed in blocks.\n# TYPE normflow_batched_requests_total counter\n",
        );
        for (m, b) in blocks.iter() {
            let _ = writeln!(out, "normflow_batched_requests_total{{model=\"{}\"}} {}", label(m), b.jobs);
        }
        out.push_str("# HELP normflow_batched_rows_total Rows computed in blocks.\n# TYPE normflow_batched_rows_total counter\n");
        for (m, b) in blocks.iter() {
            let _ = writeln!(out, "normflow_batched_rows_total{{model=\"{}\"}} {}", label(m), b.rows);
        }
        out.push_str("# HELP normflow_compute_cache_bytes Recycled buffers a model's compute thread holds.\n# TYPE normflow_compute_cache_bytes gauge\n");
        for (m, b) in blocks.iter() {
            let _ = writeln!(out, "normflow_compute_cache_bytes{{model=\"{}\"}} {}", label(m), b.cache_bytes);
        }
        drop(blocks);
        out.push_str("# HELP normflow_model_reloads_total Model reload attempts by result.\n# TYPE normflow_model_reloads_total counter\n");
        for ((m, r), n) in lock(&self.reloads).iter() {
            let _ = writeln!(out, "normflow_model_reloads_total{{model=\"{}\",result=\"{r}\"}} {n}", label(m));
        }
        out.push_str("# HELP normflow_requests_in_flight Requests being answered now.\n# TYPE normflow_requests_in_flight gauge\n");
        let _ = writeln!(out, "normflow_requests_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.record_request("a\"b", "log-prob", 200, 3, Duration::from_micros(300));
        m.record_request("a\"b", "log-prob", 200, 1, Duration::from_millis(2));
        m.record_request("a\"b", "log-prob", 400, 0, Duration::from_secs(9));
        let text = m.render();
        let key = "model=\"a\\\"b\",endpoint=\"log-prob\"";
        assert!(text.contains(&format!("normflow_requests_total{{{key},status=\"200\"}} 2")), "{text}");
        assert!(text.contains(&format!("normflow_requests_total{{{key},status=\"400\"}} 1")), "{text}");
        assert!(text.contains(&format!("normflow_rows_total{{{key}}} 4")), "{text}");
        assert!(text.contains(&format!("normflow_request_duration_seconds_bucket{{{key},le=\"0.0005\"}} 1")), "{text}");
        assert!(text.contains(&format!("normflow_request_duration_seconds_bucket{{{key},le=\"0.0025\"}} 2")), "{text}");
        assert!(text.contains(&format!("normflow_request_duration_seconds_bucket{{{key},le=\"5\"}} 2")), "{text}");
        assert!(text.contains(&format!("normflow_request_duration_seconds_bucket{{{key},le=\"+Inf\"}} 3")), "{text}");
    }
}
