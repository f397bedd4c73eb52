//! `normflow loadtest`: a closed-loop load generator for loopback servers. Each client holds one
//! keep-alive connection and sends its next request when the last is answered; the run is bounded
//! by a duration and, optionally, a request count. It reports throughput and latency percentiles.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use normflow::data::{read_table, CsvOptions};
use normflow::{Matrix, Rng};
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::args::LoadtestArgs;
use crate::commands::{print_json, CliError};

/// The longest run `--duration` allows.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Distinct request bodies the clients cycle through.
const BODIES: usize = 64;

/// A parsed `--duration`: `500ms`, `20s`, `10m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, CliError> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = number.trim().parse().map_err(|_| CliError::Usage(format!("--duration {s}: expected a number and a unit (ms, s, m)")))?;
    let seconds = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(CliError::Usage(format!("--duration {s}: the unit is ms, s or m"))),
    };
    let d = Duration::try_from_secs_f64(seconds).map_err(|_| CliError::Usage(format!("--duration {s}: not a valid duration")))?;
    if d.is_zero() || d > MAX_DURATION {
        return Err(CliError::Usage(format!("--duration {s}: must be above zero and at most one hour")));
    }
    Ok(d)
}

/// A target: the loopback address, the path, and the `/v1/models/NAME` prefix and endpoint.
struct Target {
    addr: std::net::SocketAddr,
    host: String,
    path: String,
    model: Option<(String, String)>,
}

async fn parse_target(url: &str) -> Result<Target, CliError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| CliError::Usage(format!("{url}: only http:// URLs")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let host_port = if authority.contains(':') && !authority.ends_with(']') { authority.to_string() } else { format!("{authority}:80") };
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&host_port)
        .await
        .map_err(|e| CliError::Usage(format!("{url}: cannot resolve {authority}: {e}")))?
        .collect();
    let addr = *addrs.first().ok_or_else(|| CliError::Usage(format!("{url}: {authority} has no address")))?;
    if !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(CliError::Usage(format!("{url}: loadtest only targets loopback addresses (127.0.0.0/8, ::1, localhost)")));
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let model = match segments.as_slice() {
        ["v1", "models", name, endpoint] => Some((name.to_string(), endpoint.to_string())),
        _ => None,
    };
    Ok(Target { addr, host: authority.to_string(), path: path.to_string(), model })
}

async fn connect(target: &Target) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(target: &Target, method: Method, path: &str, body: Bytes, content_type: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", &target.host)
        .header("content-type", content_type)
        .body(Full::new(body))
        .expect("a valid request")
}

/// One request on a fresh connection, for setting up: the status and the body.
async fn call(target: &Target, method: Method, path: &str, body: Value) -> Result<(u16, Value), CliError> {
    let mut s = connect(target).await.map_err(|e| CliError::Usage(format!("cannot connect to {}: {e}", target.addr)))?;
    let body = if method == Method::GET { Bytes::new() } else { Bytes::from(body.to_string()) };
    let r = s
        .send_request(request(target, method, path, body, "application/json"))
        .await
        .map_err(|e| CliError::Usage(format!("{path}: {e}")))?;
    let status = r.status().as_u16();
    let bytes = r.into_body().collect().await.map_err(|e| CliError::Usage(format!("{path}: {e}")))?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Rows to send: `--data`, else standard normal latents for `/decode`, else samples the server
/// draws from the model.
async fn source_rows(a: &LoadtestArgs, target: &Target) -> Result<Matrix, CliError> {
    if let Some(path) = &a.data {
        return Ok(read_table(path, &CsvOptions::default())?.data);
    }
    let Some((name, endpoint)) = &target.model else {
        return Err(CliError::Usage("give --data, or a URL of the form http://HOST:PORT/v1/models/NAME/ENDPOINT".into()));
    };
    let (status, info) = call(target, Method::GET, &format!("/v1/models/{name}"), Value::Null).await?;
    if status != 200 {
        return Err(CliError::Usage(format!("GET /v1/models/{name}: status {status}: {info}")));
    }
    if info["context_dim"].as_u64().unwrap_or(0) > 0 {
        return Err(CliError::Usage(format!("{name} is conditional: give rows with their context columns in --data")));
    }
    let dim = info["dim"].as_u64().unwrap_or(0) as usize;
    let n = (a.rows * BODIES).clamp(1, 50_000);
    if endpoint == "decode" {
        let mut rng = Rng::new(7);
        return Ok(Matrix::from_vec(n, dim, (0..n * dim).map(|_| rng.normal() as f32).collect()));
    }
    let (status, drawn) = call(target, Method::POST, &format!("/v1/models/{name}/sample"), json!({ "n": n, "seed": 7 })).await?;
    let rows: Vec<Vec<f32>> = drawn["rows"]
        .as_array()
        .filter(|_| status == 200)
        .ok_or_else(|| CliError::Usage(format!("/v1/models/{name}/sample: status {status}: {drawn}")))?
        .iter()
        .map(|r| r.as_array().map(|v| v.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect()).unwrap_or_default())
        .collect();
    Matrix::from_rows(&rows).ok_or_else(|| CliError::Usage("the server's samples were ragged".into()))
}

/// Request bodies of `--rows` rows each, cycling through the source rows.
fn bodies(a: &LoadtestArgs, target: &Target, rows: &Matrix) -> Result<Vec<Bytes>, CliError> {
    if target.model.as_ref().is_some_and(|m| m.1 == "sample") {
        return Ok(vec![Bytes::from(json!({ "n": a.rows }).to_string())]);
    }
    if rows.rows() == 0 {
        return Err(CliError::Usage("no rows to send".into()));
    }
    let mut next = 0;
    let mut out = Vec::with_capacity(BODIES);
    for _ in 0..BODIES {
        let block: Vec<&[f32]> = (0..a.rows)
            .map(|_| {
                let r = rows.row(next % rows.rows());
                next += 1;
                r
            })
            .collect();
        let text = if a.csv {
            block.iter().map(|r| r.iter().map(f32::to_string).collect::<Vec<_>>().join(",") + "\n").collect::<String>()
        } else {
            json!({ "rows": block }).to_string()
        };
        out.push(Bytes::from(text));
    }
    Ok(out)
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    by_status: BTreeMap<u16, u64>,
    connection_errors: u64,
}

async fn client(
    target: Arc<Target>,
    bodies: Arc<Vec<Bytes>>,
    content_type: &'static str,
    first: usize,
    stop: Instant,
    budget: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut k = first;
    while Instant::now() < stop && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
        if sender.is_none() {
            match connect(&target).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    tally.connection_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().expect("connected above");
        let body = bodies[k % bodies.len()].clone();
        k += 1;
        let started = Instant::now();
        let result = async {
            s.ready().await?;
            let r = s.send_request(request(&target, Method::POST, &target.path, body, content_type)).await?;
            let status = r.status().as_u16();
            r.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        }
        .await;
        match result {
            Ok(status) => {
                tally.latencies_us.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                *tally.by_status.entry(status).or_default() += 1;
            }
            Err(_) => {
                tally.connection_errors += 1;
                sender = None;
            }
        }
    }
    tally
}

fn percentile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Runs `normflow loadtest`.
pub fn run(a: LoadtestArgs) -> Result<(), CliError> {
    if a.concurrency == 0 || a.concurrency > 4096 {
        return Err(CliError::Usage("--concurrency must be between 1 and 4096".into()));
    }
    if a.rows == 0 {
        return Err(CliError::Usage("--rows must be at least 1".into()));
    }
    let duration = parse_duration(&a.duration)?;
    // One thread drives every client, leaving the other cores to the server under test.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let target = Arc::new(parse_target(&a.url).await?);
        let rows = source_rows(&a, &target).await?;
        let bodies = Arc::new(bodies(&a, &target, &rows)?);
        let content_type = if a.csv { "text/csv" } else { "application/json" };
        let budget = Arc::new(AtomicU64::new(a.requests.unwrap_or(u64::MAX / 2)));
        let started = Instant::now();
        let stop = started + duration;
        let tasks: Vec<_> = (0..a.concurrency)
            .map(|c| tokio::spawn(client(target.clone(), bodies.clone(), content_type, c * 7, stop, budget.clone())))
            .collect();
        let mut all = Tally::default();
        for t in tasks {
            let t = t.await.map_err(|e| CliError::Usage(format!("a client failed: {e}")))?;
            all.latencies_us.extend(t.latencies_us);
            for (s, n) in t.by_status {
                *all.by_status.entry(s).or_default() += n;
            }
            all.connection_errors += t.connection_errors;
        }
        let seconds = started.elapsed().as_secs_f64();
        all.latencies_us.sort_unstable();
        let answered = all.latencies_us.len() as u64;
        let ok = all.by_status.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum::<u64>();
        let rows_per_request = a.rows as f64;
        let report = json!({
            "url": a.url,
            "concurrency": a.concurrency,
            "rows_per_request": a.rows,
            "seconds": seconds,
            "requests": answered,
            "ok": ok,
            "status": all.by_status.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "connection_errors": all.connection_errors,
            "requests_per_s": answered as f64 / seconds,
            "rows_per_s": ok as f64 * rows_per_request / seconds,
            "p50_ms": percentile_ms(&all.latencies_us, 0.50),
            "p90_ms": percentile_ms(&all.latencies_us, 0.90),
            "p99_ms": percentile_ms(&all.latencies_us, 0.99),
            "max_ms": percentile_ms(&all.latencies_us, 1.0),
        });
        if a.json {
            return print_json(&report);
        }
        println!("{} clients × {} rows for {:.1} s against {}", a.concurrency, a.rows, seconds, a.url);
        println!("requests      {answered} ({ok} ok, {} connection errors)", all.connection_errors);
        println!("status        {}", report["status"]);
        println!(
            "throughput    {:.0} requests/s, {:.0} rows/s",
            report["requests_per_s"].as_f64().unwrap_or(0.0),
            report["rows_per_s"].as_f64().unwrap_or(0.0)
        );
        println!(
            "latency ms    p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            report["p50_ms"].as_f64().unwrap_or(f64::NAN),
            report["p90_ms"].as_f64().unwrap_or(f64::NAN),
            report["p99_ms"].as_f64().unwrap_or(f64::NAN),
            report["max_ms"].as_f64().unwrap_or(f64::NAN)
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_units_and_bounds() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("61m").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn only_loopback_targets() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            assert!(parse_target("http://127.0.0.1:9/v1/models/a/log-prob").await.is_ok());
            assert!(parse_target("http://10.1.2.3:9/").await.is_err());
            assert!(parse_target("https://127.0.0.1:9/").await.is_err());
            let t = parse_target("http://127.0.0.1:9/v1/models/demo/score").await.unwrap();
            assert_eq!(t.model, Some(("demo".to_string(), "score".to_string())));
        });
    }
}
