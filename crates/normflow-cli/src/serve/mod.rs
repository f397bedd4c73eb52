//! `normflow serve`: exact densities, anomaly scores, samples and latent codes over HTTP, and
//! `normflow loadtest`, the load generator its tests and benchmarks use.
//!
//! Built on tokio and hyper (HTTP/1.1 with keep-alive): hyper gives the connection-level
//! controls a server for live traffic needs (header read timeout, graceful shutdown of every
//! connection), and the routes are few enough to match by hand.

mod args;
mod batcher;
mod body;
mod http;
mod loadtest;
mod metrics;
mod models;

pub use args::{LoadtestArgs, ServeArgs};
pub use loadtest::run as loadtest;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::commands::CliError;
use batcher::BatchConfig;
use http::{Limits, State};
use metrics::Metrics;
use models::Registry;

/// Locks a mutex, also after a panic elsewhere poisoned it (the guarded figures stay usable).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the server until SIGTERM or SIGINT, then drains in-flight requests.
pub fn serve(a: ServeArgs) -> Result<(), CliError> {
    let metrics = Arc::new(Metrics::default());
    let config = BatchConfig { max_rows: a.batch_rows.max(1), window: Duration::from_micros(a.batch_window_us) };
    let registry = Registry::load(&a.models, config, metrics.clone())?;
    let limits =
        Limits { max_body_bytes: a.max_body_bytes, max_rows: a.max_rows.max(1), timeout: Duration::from_millis(a.timeout_ms.max(1)) };
    let state = Arc::new(State::new(registry, metrics, limits, a.max_concurrency));
    // Two async threads suffice to move bytes; compute runs on each model's thread and the
    // engine's pool.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(a, state))
}

async fn run(a: ServeArgs, state: Arc<State>) -> Result<(), CliError> {
    let listener = TcpListener::bind((a.host.as_str(), a.port))
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {}:{}: {e}", a.host, a.port)))?;
    let addr: SocketAddr = listener.local_addr()?;
    let names: Vec<&str> = state.registry.names().collect();
    eprintln!("serving {} at http://{addr} (POST /v1/models/NAME/log-prob, score, sample, encode, decode)", names.join(", "));
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(true);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let s = state.clone();
                    let service = service_fn(move |req| http::handle(s.clone(), req));
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                // Out of file descriptors and the like: wait a moment rather than spin or stop.
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = hangup.recv() => {
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || s.registry.reload()).await;
            }
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    drop(listener);
    state.draining.store(true, Ordering::Relaxed);
    eprintln!("draining: finishing the requests in flight");
    tokio::select! {
        _ = graceful.shutdown() => eprintln!("stopped"),
        _ = tokio::time::sleep(Duration::from_millis(a.drain_ms)) => eprintln!("stopped with requests still in flight after --drain-ms"),
    }
    Ok(())
}
