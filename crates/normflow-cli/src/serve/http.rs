//! Routing and the endpoints. Every answer is built here: limits (body size, rows, time,
//! requests in flight), parsing, the hand-off to a model's compute thread, and the response in
//! the request's body type. Errors are JSON `{"error": "..."}` with a status that says whose
//! fault it was.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use normflow::{Matrix, Rng};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Semaphore};

use super::batcher::{Job, Op, Output};
use super::body::{self, Kind, Layout, Rows};
use super::metrics::Metrics;
use super::models::{Model, Registry};
use crate::output::numbered;

/// The server's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest body in bytes.
    pub max_body_bytes: usize,
    /// Most rows per request (and samples per `/sample`).
    pub max_rows: usize,
    /// Time limit of one request.
    pub timeout: Duration,
}

/// What every request handler shares.
pub struct State {
    /// The models.
    pub registry: Registry,
    /// The figures `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Limits on requests.
    pub limits: Limits,
    /// One permit per request allowed in flight.
    pub permits: Arc<Semaphore>,
    /// Set on SIGTERM: `/readyz` answers 503 while in-flight requests finish.
    pub draining: AtomicBool,
    /// Seeds `/sample` requests that bring none.
    seeds: AtomicU64,
}

impl State {
    /// The shared state of a server.
    pub fn new(registry: Registry, metrics: Arc<Metrics>, limits: Limits, max_concurrency: usize) -> State {
        let clock = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        State {
            registry,
            metrics,
            limits,
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
            draining: AtomicBool::new(false),
            seeds: AtomicU64::new(clock),
        }
    }
}

/// A response body.
type Body = Full<Bytes>;

/// A failed request: status and message.
struct Failure {
    status: StatusCode,
    message: String,
}

fn fail(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure { status, message: message.into() }
}

fn bad(message: impl Into<String>) -> Failure {
    fail(StatusCode::BAD_REQUEST, message)
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("text/plain")));
    r
}

fn error_response(f: Failure) -> Response<Body> {
    let mut r = respond(f.status, "application/json", json!({ "error": f.message }).to_string());
    if f.status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Counts a request in flight until dropped (also when the client goes away mid-request).
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(m: &'a Metrics) -> Self {
        m.add_in_flight(1);
        InFlight(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.add_in_flight(-1);
    }
}

/// The answer to one request, recorded in the metrics.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let _in_flight = InFlight::new(&state.metrics);
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let (model, endpoint, answer) = match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => ("", "healthz", Ok((respond(StatusCode::OK, "text/plain", "ok\n".into()), 0))),
        (&Method::GET, ["readyz"]) => ("", "readyz", Ok((ready(&state), 0))),
        (&Method::GET, ["metrics"]) => {
            ("", "metrics", Ok((respond(StatusCode::OK, "text/plain; version=0.0.4", state.metrics.render()), 0)))
        }
        (&Method::GET, ["v1", "models"]) => {
            let models: Vec<Value> = state.registry.names().filter_map(|n| state.registry.describe(n)).collect();
            ("", "models", Ok((respond(StatusCode::OK, "application/json", json!({ "models": models }).to_string()), 0)))
        }
        (&Method::GET, ["v1", "models", name]) => {
            let known = state.registry.names().find(|n| n == name).unwrap_or("unknown");
            let answer = state
                .registry
                .describe(name)
                .map(|v| (respond(StatusCode::OK, "application/json", v.to_string()), 0))
                .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no model named {name}")));
            (known, "model", answer)
        }
        (&Method::POST, ["v1", "models", name, op]) => {
            let known = state.registry.names().find(|n| n == name).map(str::to_string);
            let endpoint = ["log-prob", "score", "sample", "encode", "decode"].into_iter().find(|e| e == op).unwrap_or("unknown");
            let answer = match known.as_deref() {
                None => Err(fail(StatusCode::NOT_FOUND, format!("no model named {name}"))),
                Some(_) if endpoint == "unknown" => {
                    Err(fail(StatusCode::NOT_FOUND, format!("no endpoint {op} (log-prob, score, sample, encode, decode)")))
                }
                Some(name) => model_endpoint(&state, name, endpoint, req).await,
            };
            let label = if known.is_some() { *name } else { "unknown" };
            (label, endpoint, answer)
        }
        (&Method::POST, ["admin", "reload"]) => {
            let s = state.clone();
            let report =
                tokio::task::spawn_blocking(move || s.registry.reload()).await.unwrap_or_else(|e| json!({ "error": e.to_string() }));
            ("", "reload", Ok((respond(StatusCode::OK, "application/json", json!({ "models": report }).to_string()), 0)))
        }
        (_, ["healthz" | "readyz" | "metrics"] | ["v1", "models"] | ["v1", "models", _] | ["v1", "models", _, _] | ["admin", "reload"]) => {
            ("", "unknown", Err(fail(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {path}"))))
        }
        _ => ("", "unknown", Err(fail(StatusCode::NOT_FOUND, format!("no such path: {path}")))),
    };
    let (response, rows) = answer.unwrap_or_else(|f| (error_response(f), 0));
    state.metrics.record_request(model, endpoint, response.status().as_u16(), rows, start.elapsed());
    Ok(response)
}

fn ready(state: &State) -> Response<Body> {
    if state.draining.load(Ordering::Relaxed) {
        respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n".into())
    } else {
        respond(StatusCode::OK, "text/plain", "ready\n".into())
    }
}

/// Bodies above this size are parsed off the async threads.
const PARSE_INLINE_BYTES: usize = 64 << 10;

/// `POST /v1/models/{name}/{endpoint}`; the response and the rows it covered.
async fn model_endpoint(
    state: &Arc<State>,
    name: &str,
    endpoint: &str,
    req: Request<Incoming>,
) -> Result<(Response<Body>, usize), Failure> {
    let deadline = Instant::now() + state.limits.timeout;
    let _permit = state
        .permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| fail(StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight (--max-concurrency); retry shortly"))?;
    let model = state.registry.get(name).ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no model named {name}")))?;
    let kind = Kind::of(req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()));
    let bytes = read_body(req, state.limits, deadline).await?;
    if endpoint == "sample" {
        return sample(state, &model, &bytes, kind, deadline).await;
    }
    let op = match endpoint {
        "log-prob" | "score" => Op::LogProb,
        "encode" => Op::Encode,
        _ => Op::Decode,
    };
    if endpoint == "score" && model.threshold.is_none() {
        return Err(bad(format!("{name} is not an anomaly detector (train it with `normflow anomaly fit`); use /log-prob")));
    }
    let latent_names = numbered("z", model.flow.dim());
    let columns = if op == Op::Decode { &latent_names } else { &model.columns };
    let max_rows = state.limits.max_rows;
    let big = bytes.len() > PARSE_INLINE_BYTES;
    let parse = {
        let model = model.clone();
        let columns = columns.clone();
        move || body::parse(kind, &bytes, &Layout { columns: &columns, context: &model.context_columns }, max_rows)
    };
    let parsed = if big {
        tokio::task::spawn_blocking(parse).await.map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    } else {
        parse()
    };
    let Rows { mut x, context } =
        parsed.map_err(|m| if m.contains("--max-rows") { fail(StatusCode::PAYLOAD_TOO_LARGE, m) } else { bad(m) })?;
    if op != Op::Decode && !model.flow.dequantized_columns().is_empty() {
        // Integer columns are scored at v + u with one fixed uniform draw, as the CLI does.
        x = model.flow.dequantize_rows(&x, &mut Rng::new(0)).map_err(|e| bad(e.to_string()))?;
    }
    let n = x.rows();
    let (reply, answer) = oneshot::channel();
    model
        .jobs
        .send(Job::Map { op, x, context, reply })
        .map_err(|_| fail(StatusCode::SERVICE_UNAVAILABLE, "the model is being replaced; retry"))?;
    let out = await_compute(answer, deadline).await?;
    let body = match (endpoint, out) {
        ("log-prob", Output::Values(v)) => body::columns_body(kind, &[("log_prob", body::values(&v))]),
        ("score", Output::Values(v)) => {
            let t = model.threshold.as_ref().expect("checked above");
            let scores: Vec<f32> = v.iter().map(|lp| if lp.is_finite() { -lp } else { f32::MAX }).collect();
            let percentile: Vec<Value> = scores.iter().map(|&s| json!(t.percentile(s))).collect();
            let flags: Vec<Value> = scores.iter().map(|&s| json!(t.flags(s))).collect();
            body::columns_body(kind, &[("score", body::values(&scores)), ("percentile", percentile), ("flag", flags)])
        }
        ("encode", Output::Rows(m)) => body::rows_body(kind, &latent_names, &m, &[]),
        ("decode", Output::Rows(m)) => body::rows_body(kind, &model.columns, &m, &[]),
        _ => return Err(fail(StatusCode::INTERNAL_SERVER_ERROR, "unexpected result kind")),
    };
    Ok((respond(StatusCode::OK, kind.content_type(), body), n))
}

/// Reads the body within the size cap and the request's deadline.
async fn read_body(req: Request<Incoming>, limits: Limits, deadline: Instant) -> Result<Bytes, Failure> {
    let too_big = || fail(StatusCode::PAYLOAD_TOO_LARGE, format!("the body exceeds {} bytes (--max-body-bytes)", limits.max_body_bytes));
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(too_big());
    }
    let collect = Limited::new(req.into_body(), limits.max_body_bytes).collect();
    match tokio::time::timeout_at(deadline.into(), collect).await {
        Err(_) => Err(fail(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time")),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_big()),
        Ok(Err(e)) => Err(bad(format!("could not read the body: {e}"))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Waits for the compute thread's answer until the deadline.
async fn await_compute(answer: oneshot::Receiver<Result<Output, normflow::Error>>, deadline: Instant) -> Result<Output, Failure> {
    match tokio::time::timeout_at(deadline.into(), answer).await {
        Err(_) => Err(fail(StatusCode::SERVICE_UNAVAILABLE, "timed out waiting for compute (--timeout-ms)")),
        Ok(Err(_)) => Err(fail(StatusCode::INTERNAL_SERVER_ERROR, "the compute thread stopped")),
        Ok(Ok(Err(e))) => Err(flow_failure(e)),
        Ok(Ok(Ok(out))) => Ok(out),
    }
}

/// Input errors are the client's (400); the rest are the server's (500).
fn flow_failure(e: normflow::Error) -> Failure {
    use normflow::Error as E;
    match e {
        E::DimensionMismatch { .. }
        | E::ContextMismatch(_)
        | E::NonFiniteInput { .. }
        | E::ValueTooLarge { .. }
        | E::OutOfBounds { .. }
        | E::NotInteger { .. }
        | E::InvalidConfig(_) => bad(e.to_string()),
        other => fail(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// `POST /v1/models/{name}/sample`: `{"n": 10, "seed": 7, "context": [..]}`; the context of a
/// conditional model is one row (for all samples) or `n` rows (one sample each).
async fn sample(
    state: &Arc<State>,
    model: &Arc<Model>,
    bytes: &[u8],
    kind: Kind,
    deadline: Instant,
) -> Result<(Response<Body>, usize), Failure> {
    let v: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes).map_err(|e| bad(format!("malformed JSON: {e}")))?
    };
    let o = v.as_object().ok_or_else(|| bad("the body must be a JSON object such as {\"n\": 10, \"seed\": 7}"))?;
    if let Some(key) = o.keys().find(|k| !["n", "seed", "context"].contains(&k.as_str())) {
        return Err(bad(format!("unknown field \"{key}\" (a sample request has \"n\", \"seed\" and \"context\")")));
    }
    let n = match o.get("n") {
        None => 1,
        Some(n) => {
            n.as_u64().filter(|&n| n >= 1).ok_or_else(|| bad(format!("\"n\" must be a whole number of at least 1, got {n}")))? as usize
        }
    };
    if n > state.limits.max_rows {
        return Err(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{n} samples; this server draws at most {} per request (--max-rows)", state.limits.max_rows),
        ));
    }
    let seed = match o.get("seed") {
        None => state.seeds.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed),
        Some(s) => s.as_u64().ok_or_else(|| bad(format!("\"seed\" must be a whole number, got {s}")))?,
    };
    let context = sample_context(model, o.get("context"), n)?;
    let (reply, answer) = oneshot::channel();
    model
        .jobs
        .send(Job::Sample { n, context, seed, reply })
        .map_err(|_| fail(StatusCode::SERVICE_UNAVAILABLE, "the model is being replaced; retry"))?;
    match await_compute(answer, deadline).await? {
        Output::Rows(m) => {
            Ok((respond(StatusCode::OK, kind.content_type(), body::rows_body(kind, &model.columns, &m, &[("seed", json!(seed))])), n))
        }
        Output::Values(_) => Err(fail(StatusCode::INTERNAL_SERVER_ERROR, "unexpected result kind")),
    }
}

/// The context rows of a sample request, repeated to `n` rows when one is given.
fn sample_context(model: &Model, given: Option<&Value>, n: usize) -> Result<Option<Matrix>, Failure> {
    let k = model.flow.context_dim();
    let names = &model.context_columns;
    match (k, given) {
        (0, None | Some(Value::Null)) => Ok(None),
        (0, Some(_)) => Err(bad("\"context\" given, but the model is unconditional")),
        (_, None | Some(Value::Null)) => Err(bad(format!("the model is conditional: give \"context\" ({})", names.join(", ")))),
        (_, Some(Value::Array(rows))) if rows.first().is_some_and(Value::is_array) => {
            if rows.len() != n {
                return Err(bad(format!("{} context rows for n = {n} (give one row, or n rows)", rows.len())));
            }
            let parsed = body::parse_json(&serde_json::to_vec(rows).unwrap_or_default(), &Layout { columns: names, context: &[] }, n)
                .map_err(bad)?;
            Ok(Some(parsed.x))
        }
        (_, Some(row)) => {
            let parsed = body::parse_json(&serde_json::to_vec(&[row]).unwrap_or_default(), &Layout { columns: names, context: &[] }, 1)
                .map_err(bad)?;
            Ok(Some(parsed.x.repeat_rows(n)))
        }
    }
}
