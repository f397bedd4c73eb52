//! Flags of `serve` and `loadtest`.

use std::path::PathBuf;

use clap::Args;

/// Flags of `serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Model files (flows and anomaly detectors), each `path` (named by its file stem) or
    /// `name=path`.
    #[arg(required = true)]
    pub models: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed on start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Largest request body, in bytes (413 above it).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Most rows in one request, and most samples one request may ask for (413 above it).
    #[arg(long, default_value_t = 100_000)]
    pub max_rows: usize,
    /// Most requests in flight at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 1024)]
    pub max_concurrency: usize,
    /// Time limit of one request, body upload included, in milliseconds (408 while the body
    /// is still arriving, 503 while it waits for compute).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Most rows computed in one block: concurrent requests for a model are coalesced up to it.
    #[arg(long, default_value_t = 8192)]
    pub batch_rows: usize,
    /// How long a block waits for more requests once the first has arrived, in microseconds
    /// (0: take what is already queued; under load the queue fills while the last block runs).
    #[arg(long, default_value_t = 0)]
    pub batch_window_us: u64,
    /// On SIGTERM, how long in-flight requests may take to finish, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub drain_ms: u64,
}

/// Flags of `loadtest`.
#[derive(Args, Debug, Clone)]
pub struct LoadtestArgs {
    /// Endpoint to load: `http://127.0.0.1:PORT/v1/models/NAME/ENDPOINT` (loopback only).
    pub url: String,
    /// Clients sending requests at once, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long to run: `20s`, `500ms`, `10m` (at most one hour).
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Stop after this many requests (default: only the duration bounds the run).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Rows per request (samples per request for `/sample`).
    #[arg(long, default_value_t = 1)]
    pub rows: usize,
    /// Rows to send, from a CSV or NPY file (in the model's column order); default: rows the
    /// server samples from the model itself (unconditional models).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Send CSV bodies instead of JSON.
    #[arg(long)]
    pub csv: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}
