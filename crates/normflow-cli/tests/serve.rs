//! `normflow serve` end to end: the real binary on a loopback port, raw HTTP/1.1 requests, the
//! fault cases the issue lists (malformed JSON, a body over the cap, NaN, wrong width, a slow
//! client, a client that disconnects mid-request, reload under load, SIGTERM under load) and a
//! 20-second soak at 64 clients.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ok, s, write_conditional_data, write_data, TempDir};
use serde_json::{json, Value};

/// A running server; killed when dropped.
struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_normflow"))
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts the server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr =
            rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("the server did not start: {:?}", log.lock().unwrap()));
        Server { child, addr, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server wrote a line starting with `prefix` within five seconds. The log is
    /// read by another thread, so a line the server wrote before answering may arrive here
    /// after the answer does.
    fn logged(&self, prefix: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.starts_with(prefix)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reads the answer");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no answer: {text:?}"));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    Answer { status, headers: head.to_ascii_lowercase(), body: body.to_string() }
}

fn request_bytes(method: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn http(server: &Server, method: &str, path: &str, content_type: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(&server.addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(&request_bytes(method, path, content_type, body)).unwrap();
    read_answer(&mut stream)
}

fn post(server: &Server, path: &str, body: Value) -> Answer {
    http(server, "POST", path, "application/json", body.to_string().as_bytes())
}

fn get(server: &Server, path: &str) -> Answer {
    http(server, "GET", path, "application/json", b"")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number")).collect()
}

/// A trained flow on columns `a,b` and an anomaly detector, in `t`.
fn models(t: &TempDir) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let data = t.path("data.csv");
    write_data(&data, 2000, 3);
    let (flow, detector) = (t.path("flow.safetensors"), t.path("det.safetensors"));
    ok(&["train", s(&data), "--layers", "2", "--hidden", "16", "--epochs", "2", "-q", "-o", s(&flow)]);
    ok(&["anomaly", "fit", s(&data), "--layers", "2", "--hidden", "16", "--epochs", "2", "-q", "-o", s(&detector)]);
    (data, flow, detector)
}

fn metric(server: &Server, prefix: &str) -> f64 {
    let text = get(server, "/metrics").body;
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[test]
fn every_endpoint_answers_and_agrees_with_the_cli() {
    let t = TempDir::new("serve-endpoints");
    let (data, flow, detector) = models(&t);
    let server = Server::start(&[&format!("flow={}", s(&flow)), s(&detector)]);
    assert_eq!(get(&server, "/healthz").status, 200);
    assert_eq!(get(&server, "/readyz").status, 200);
    let listed = get(&server, "/v1/models").json();
    let names: Vec<&str> = listed["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["det", "flow"]);
    assert!(listed["models"][0]["anomaly_threshold"]["threshold"].is_number());
    assert_eq!(listed["models"][1]["columns"], json!(["a", "b"]));

    // log-prob: the CLI's numbers, rows as arrays or as objects by name.
    let cli: Vec<f64> = ok(&["log-prob", s(&flow), s(&data)]).lines().skip(1).take(5).map(|l| l.parse().unwrap()).collect();
    let text = std::fs::read_to_string(&data).unwrap();
    let rows: Vec<Vec<f64>> = text.lines().skip(1).take(5).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    let by_array = post(&server, "/v1/models/flow/log-prob", json!({ "rows": rows }));
    assert_eq!(by_array.status, 200, "{}", by_array.body);
    let objects: Vec<Value> = rows.iter().map(|r| json!({ "b": r[1], "a": r[0] })).collect();
    let by_name = post(&server, "/v1/models/flow/log-prob", json!({ "rows": objects }));
    for answer in [&by_array, &by_name] {
        let lp = floats(&answer.json()["log_prob"]);
        for (a, b) in lp.iter().zip(&cli) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "served {a} vs CLI {b}");
        }
    }
    // CSV in, CSV out.
    let csv = http(&server, "POST", "/v1/models/flow/log-prob", "text/csv", format!("b,a\n{},{}\n", rows[0][1], rows[0][0]).as_bytes());
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(csv.headers.contains("content-type: text/csv"));
    let mut lines = csv.body.lines();
    assert_eq!(lines.next(), Some("log_prob"));
    assert!((lines.next().unwrap().parse::<f64>().unwrap() - cli[0]).abs() < 1e-4);

    // score: the detector's threshold decides the flag.
    let scored = post(&server, "/v1/models/det/score", json!({ "rows": [[0.0, 0.0], [40.0, -40.0]] })).json();
    assert_eq!(scored["flag"], json!([false, true]));
    let p = floats(&scored["percentile"]);
    assert!(p[0] < p[1] && p[1] >= 0.99, "{p:?}");
    let refused = post(&server, "/v1/models/flow/score", json!({ "rows": [[0.0, 0.0]] }));
    assert_eq!(refused.status, 400);
    assert!(refused.json()["error"].as_str().unwrap().contains("not an anomaly detector"));

    // sample: a seed gives the same rows; encode then decode gives the rows back.
    let a = post(&server, "/v1/models/flow/sample", json!({ "n": 4, "seed": 11 })).json();
    let b = post(&server, "/v1/models/flow/sample", json!({ "n": 4, "seed": 11 })).json();
    assert_eq!(a["rows"], b["rows"]);
    assert_eq!(a["rows"].as_array().unwrap().len(), 4);
    let z = post(&server, "/v1/models/flow/encode", json!({ "rows": a["rows"] })).json();
    assert_eq!(z["columns"], json!(["z1", "z2"]));
    let back = post(&server, "/v1/models/flow/decode", json!({ "rows": z["rows"] })).json();
    for (x, y) in a["rows"].as_array().unwrap().iter().zip(back["rows"].as_array().unwrap()) {
        for (u, v) in floats(x).iter().zip(floats(y)) {
            assert!((u - v).abs() < 1e-4, "{u} vs {v}");
        }
    }
    let m = get(&server, "/metrics").body;
    assert!(m.contains("normflow_requests_total{model=\"flow\",endpoint=\"log-prob\",status=\"200\"} 3"), "{m}");
    assert!(m.contains("normflow_rows_total{model=\"flow\",endpoint=\"log-prob\"} 11"), "{m}");
    assert!(m.contains("normflow_request_duration_seconds_count{model=\"det\",endpoint=\"score\"} 1"), "{m}");
}

#[test]
fn a_conditional_model_takes_its_context_by_name_or_beside_the_rows() {
    let t = TempDir::new("serve-conditional");
    let data = t.path("cond.csv");
    write_conditional_data(&data, 3000, 1);
    let model = t.path("cond.safetensors");
    let args = ["--flow", "maf", "--context-columns", "c", "--layers", "2", "--hidden", "32,32", "--epochs", "15", "--lr", "2e-3"];
    ok(&[&["train", s(&data)][..], &args, &["-q", "-o", s(&model)]].concat());
    let server = Server::start(&[s(&model)]);
    let by_name = post(&server, "/v1/models/cond/log-prob", json!({ "rows": [{ "x": 2.0, "y": 0.0, "c": 1.0 }] })).json();
    let beside = post(&server, "/v1/models/cond/log-prob", json!({ "rows": [[2.0, 0.0]], "context": [[1.0]] })).json();
    assert_eq!(by_name["log_prob"], beside["log_prob"]);
    let missing = post(&server, "/v1/models/cond/log-prob", json!({ "rows": [[2.0, 0.0]] }));
    assert_eq!(missing.status, 400);
    assert!(missing.json()["error"].as_str().unwrap().contains("conditional"), "{}", missing.body);
    // x = 2c + noise: samples at c = 1 centre on x = 2, one context row for all or one per sample.
    let mean_x = |body: Value| {
        let a = post(&server, "/v1/models/cond/sample", body).json();
        a["rows"].as_array().unwrap().iter().map(|r| r[0].as_f64().unwrap()).sum::<f64>() / 500.0
    };
    let shared = mean_x(json!({ "n": 500, "seed": 1, "context": [1.0] }));
    let per_row = mean_x(json!({ "n": 500, "seed": 2, "context": vec![[1.0]; 500] }));
    assert!((shared - 2.0).abs() < 0.2 && (per_row - 2.0).abs() < 0.2, "E[x | c = 1] = {shared}, {per_row}");
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_stays_up() {
    let t = TempDir::new("serve-faults");
    let (_, flow, _) = models(&t);
    let server =
        Server::start(&[s(&flow), "--max-body-bytes", "2000", "--max-rows", "50", "--timeout-ms", "700", "--max-concurrency", "2"]);
    let path = "/v1/models/flow/log-prob";
    let error = |a: &Answer| a.json()["error"].as_str().unwrap().to_string();

    let malformed = http(&server, "POST", path, "application/json", b"{\"rows\": [[1, 2]");
    assert_eq!(malformed.status, 400);
    assert!(error(&malformed).contains("malformed JSON"));
    let nan = http(&server, "POST", path, "text/csv", b"a,b\n1,2\n3,nan\n");
    assert_eq!(nan.status, 400);
    assert!(error(&nan).starts_with("row 2, column b"), "{}", nan.body);
    let wide = post(&server, path, json!({ "rows": [[1, 2], [1, 2, 3]] }));
    assert_eq!(wide.status, 400);
    assert!(error(&wide).starts_with("row 2: 3 data values, the model expects 2 (a, b)"), "{}", wide.body);
    let unknown = post(&server, path, json!({ "rows": [{ "a": 1, "b": 2, "zz": 3 }] }));
    assert!(unknown.status == 400 && error(&unknown).contains("unknown column \"zz\""));
    let big = post(&server, path, json!({ "rows": vec![[0.123456789, 0.987654321]; 120] }));
    assert_eq!(big.status, 413, "{}", big.body);
    let many = post(&server, path, json!({ "rows": vec![[0, 0]; 60] }));
    assert_eq!(many.status, 413);
    assert!(error(&many).contains("at most 50"));
    assert_eq!(post(&server, "/v1/models/nope/log-prob", json!({ "rows": [[0, 0]] })).status, 404);
    assert_eq!(post(&server, "/v1/models/flow/frobnicate", json!({ "rows": [[0, 0]] })).status, 404);
    assert_eq!(get(&server, path).status, 405);
    assert_eq!(post(&server, "/v1/models/flow/sample", json!({ "n": 51 })).status, 413);

    // A slow client: headers and half a body, then nothing. It holds one of the two permits
    // until the time limit answers it with 408; meanwhile others are served.
    let body = json!({ "rows": [[0.5, 0.5]] }).to_string();
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    let full = request_bytes("POST", path, "application/json", body.as_bytes());
    slow.write_all(&full[..full.len() - 5]).unwrap();
    // A client that disconnects mid-request.
    let mut gone = TcpStream::connect(&server.addr).unwrap();
    gone.write_all(&full[..full.len() - 5]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // Both permits are held: the next request is turned away with 503 and Retry-After.
    let busy = post(&server, path, json!({ "rows": [[0.5, 0.5]] }));
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert!(busy.headers.contains("retry-after: 1"));
    drop(gone);
    std::thread::sleep(Duration::from_millis(100));
    let served = post(&server, path, json!({ "rows": [[0.5, 0.5]] }));
    assert_eq!(served.status, 200, "a disconnected client must free its permit: {}", served.body);
    let started = Instant::now();
    let answer = read_answer(&mut slow);
    assert_eq!(answer.status, 408, "{}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(5));

    assert_eq!(get(&server, "/healthz").status, 200);
    let m = get(&server, "/metrics").body;
    assert!(m.contains("status=\"400\""), "{m}");
    assert!(m.contains("normflow_requests_total{model=\"unknown\",endpoint=\"log-prob\",status=\"404\"} 1"), "{m}");
}

/// Sends a signal to the server (through the shell's `kill`, present wherever `sh` is).
fn signal(server: &Server, name: &str) {
    let status = Command::new("sh").args(["-c", &format!("kill -{name} {}", server.pid())]).status().unwrap();
    assert!(status.success());
}

/// Runs `normflow loadtest` and returns its JSON report.
fn loadtest(url: &str, extra: &[&str]) -> Value {
    let mut args = vec!["loadtest", url, "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(ok(&args).trim()).expect("the report is JSON")
}

fn assert_all_ok(report: &Value) {
    assert_eq!(report["connection_errors"], 0, "{report}");
    let status = report["status"].as_object().unwrap();
    assert!(status.keys().all(|k| k == "200"), "{report}");
    assert!(report["ok"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn reload_under_load_fails_no_request_and_a_broken_file_keeps_the_old_model() {
    let t = TempDir::new("serve-reload");
    let (data, flow, _) = models(&t);
    let served = t.path("live.safetensors");
    std::fs::copy(&flow, &served).unwrap();
    let server = Server::start(&[s(&served)]);
    let before = post(&server, "/v1/models/live/log-prob", json!({ "rows": [[0.3, 0.3]] })).json()["log_prob"].clone();
    let url = server.url("/v1/models/live/log-prob");
    let load = std::thread::spawn(move || loadtest(&url, &["--concurrency", "16", "--duration", "4s", "--rows", "4"]));
    let other = t.path("other.safetensors");
    ok(&["train", s(&data), "--layers", "3", "--hidden", "8", "--epochs", "1", "--seed", "9", "-q", "-o", s(&other)]);
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..4 {
        // Atomic replacement, as `normflow train` writes: a temp file renamed over the model.
        let tmp = t.path("live.tmp");
        std::fs::copy(if round % 2 == 0 { &other } else { &flow }, &tmp).unwrap();
        std::fs::rename(&tmp, &served).unwrap();
        if round % 2 == 0 {
            let r = post(&server, "/admin/reload", json!({})).json();
            assert_eq!(r["models"]["live"]["result"], "reloaded", "{r}");
        } else {
            signal(&server, "HUP");
        }
        std::thread::sleep(Duration::from_millis(600));
    }
    assert_all_ok(&load.join().unwrap());
    assert!(metric(&server, "normflow_model_reloads_total{model=\"live\",result=\"ok\"}") >= 4.0);
    // The last swap (SIGHUP) put the first model back.
    let again = post(&server, "/v1/models/live/log-prob", json!({ "rows": [[0.3, 0.3]] })).json()["log_prob"].clone();
    assert_eq!(before, again);

    // A truncated file: the reload fails, says why, and the old model keeps serving.
    let bytes = std::fs::read(&flow).unwrap();
    std::fs::write(&served, &bytes[..bytes.len() / 2]).unwrap();
    let r = post(&server, "/admin/reload", json!({})).json();
    assert_eq!(r["models"]["live"]["result"], "failed", "{r}");
    let info = get(&server, "/v1/models/live").json();
    assert!(info["reload_error"].as_str().unwrap().contains("live.safetensors"), "{info}");
    assert_eq!(post(&server, "/v1/models/live/log-prob", json!({ "rows": [[0.3, 0.3]] })).json()["log_prob"], before);
    assert!(server.logged("reload of live failed"), "{:?}", server.log.lock().unwrap());
}

#[test]
fn sigterm_answers_every_accepted_request_then_exits() {
    let t = TempDir::new("serve-sigterm");
    let data = t.path("data.csv");
    write_data(&data, 2000, 3);
    let model = t.path("heavy.safetensors");
    // Wide layers, so that a 40,000-row request takes a while.
    ok(&["train", s(&data), "--layers", "8", "--hidden", "256,256", "--max-steps", "2", "-q", "-o", s(&model)]);
    let mut server = Server::start(&[s(&model)]);
    let rows: Vec<[f64; 2]> = (0..40_000).map(|i| [(i % 200) as f64 / 100.0 - 1.0, (i % 7) as f64 / 7.0]).collect();
    let body = json!({ "rows": rows }).to_string();
    let mut clients: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = TcpStream::connect(&server.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            c.write_all(&request_bytes("POST", "/v1/models/heavy/log-prob", "application/json", body.as_bytes())).unwrap();
            c
        })
        .collect();
    // Wait until all four are inside the server (the /metrics request is the fifth).
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "normflow_requests_in_flight") < 5.0 {
        assert!(Instant::now() < deadline, "the requests never arrived");
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(&server, "TERM");
    for c in &mut clients {
        let a = read_answer(c);
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.json()["log_prob"].as_array().unwrap().len(), 40_000);
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "the server should exit cleanly after draining: {status:?}");
    assert!(TcpStream::connect(&server.addr).is_err(), "a stopped server accepts nothing");
    assert!(server.logged("draining"), "{:?}", server.log.lock().unwrap());
}

/// Resident memory (kB) and open file descriptors of a process.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    (rss, fds)
}

#[test]
fn a_soak_at_64_clients_keeps_memory_and_descriptors_flat() {
    let t = TempDir::new("serve-soak");
    let (_, flow, _) = models(&t);
    let server = Server::start(&[s(&flow)]);
    let url = server.url("/v1/models/flow/log-prob");
    // Warm-up: the pool, the allocator and the connections reach their steady state.
    // (10 s: after 5 s, on a busy machine, the allocator's arenas still grew by 7–9%.)
    assert_all_ok(&loadtest(&url, &["--concurrency", "64", "--duration", "10s"]));
    let (rss0, fds0) = footprint(server.pid());
    let report = loadtest(&url, &["--concurrency", "64", "--duration", "20s"]);
    assert_all_ok(&report);
    let (rss1, fds1) = footprint(server.pid());
    assert!(rss1 as f64 <= rss0 as f64 * 1.10, "resident memory grew from {rss0} kB to {rss1} kB");
    assert!(fds1 <= fds0, "open descriptors grew from {fds0} to {fds1}");
    eprintln!("soak: {report}; RSS {rss0} -> {rss1} kB, fds {fds0} -> {fds1}");
}
