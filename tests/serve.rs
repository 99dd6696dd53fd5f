//! `cwleak serve` on a loopback port (port 0: it prints the address it
//! bound), against a real leak that grows (`leakyd fork`): the series rise
//! with the leak, and bad requests (unknown path, wrong method, huge
//! headers, a client that never finishes its request, more connections than
//! allowed) get HTTP errors while the server keeps answering. SIGTERM stops
//! it with status 0. Every process is killed and reaped when its guard
//! drops, also when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/leakyd.rs"]
mod leakyd;
#[path = "support/schema.rs"]
mod schema;
#[path = "support/serve.rs"]
mod serve;
#[path = "support/skip.rs"]
mod skip;

use leakyd::{Guarded, Leakyd};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

struct Server {
    proc: Guarded,
    addr: SocketAddr,
    stderr: Receiver<String>,
    agent: ureq::Agent,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Server {
        let s = serve::start(
            Command::new(env!("CARGO_BIN_EXE_cwleak"))
                .args(["serve", "--listen", "127.0.0.1:0", "--interval", "500ms"])
                .args(["--settle", "200ms"])
                // Every blamed process its own series: other leaking
                // processes on this machine (other tests) cannot fold the
                // test's own leak into pid="other".
                .args(["--top", "1000000"])
                .args(extra),
        );
        Server {
            proc: s.proc,
            addr: s.addr,
            stderr: s.stderr,
            agent: s.agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// (status, body) of GET `path`.
    fn get(&self, path: &str) -> (u16, String) {
        let mut resp = self
            .agent
            .get(&self.url(path))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().expect("body");
        (status, body)
    }

    /// The body of GET /report, whatever its size: another load on this
    /// machine can make the host's report larger than the agent's default cap.
    fn report(&self) -> serde_json::Value {
        serde_json::from_slice(&self.report_bytes()).expect("JSON report")
    }

    fn report_bytes(&self) -> Vec<u8> {
        let mut resp = self
            .agent
            .get(&self.url("/report"))
            .call()
            .unwrap_or_else(|e| panic!("GET /report: {e}"));
        assert_eq!(resp.status().as_u16(), 200);
        resp.body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .expect("body")
    }

    /// Scrape until `pred` holds on /metrics (scans run every 500ms).
    fn metrics_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get("/metrics");
            assert_eq!(status, 200, "{body}");
            if pred(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what}; last scrape:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Raw bytes to the server; the first line of its answer.
    fn raw(&self, request: &[u8], timeout: Duration) -> String {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(timeout)).expect("timeout");
        let _ = s.write_all(request);
        status_line(&mut s)
    }
}

fn status_line(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).trim_end().to_string()
}

/// The value of `cwleak_close_wait_sockets` for `pid` and `cause`.
fn close_wait(text: &str, pid: i32, cause: &str) -> Option<u64> {
    let head = format!("cwleak_close_wait_sockets{{pid=\"{pid}\",");
    text.lines()
        .filter(|l| l.starts_with(&head) && l.contains(&format!("cause=\"{cause}\"")))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn series_rise_with_a_growing_leak() {
    let mut svc = Leakyd::start();
    let srv = Server::start();
    svc.connect(2);
    let pid = svc.pid;
    let first = srv.metrics_until("2 sockets for leakyd", |t| {
        close_wait(t, pid, "fork-parent-kept") == Some(2)
    });
    let scans = value(&first, "cwleak_scans_total").expect("cwleak_scans_total");
    svc.connect(3);
    let text = srv.metrics_until("5 sockets for leakyd", |t| {
        close_wait(t, pid, "fork-parent-kept") == Some(5)
    });
    assert!(
        value(&text, "cwleak_scans_total").expect("scans") > scans,
        "scans go on:\n{text}"
    );
    assert!(text.contains("comm=\"leakyd\""), "{text}");
    let fds = value(&text, &format!("cwleak_process_open_fds{{pid=\"{pid}\""))
        .expect("open fds of leakyd");
    assert!(fds >= 5.0, "{text}");
    assert!(
        value(&text, &format!("cwleak_process_max_fds{{pid=\"{pid}\"")).is_some(),
        "{text}"
    );
    let cw: f64 = text
        .lines()
        .filter(|l| l.starts_with("cwleak_tcp_sockets{") && l.contains("state=\"CLOSE_WAIT\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(cw >= 5.0, "{text}");
    assert!(value(&text, "cwleak_findings{cause=\"fork-parent-kept\"}").unwrap_or(0.0) >= 5.0);
    assert!(
        value(&text, "cwleak_last_scan_timestamp_seconds").is_some(),
        "{text}"
    );
    // A plain scrape gets the 0.0.4 text format (tests/serve_consumers.rs
    // checks both formats with their own parsers).
    assert!(!text.contains("# EOF"), "{text}");

    // /report is the scan JSON, with the same leak in it.
    let report = srv.report();
    assert_eq!(report["schema_version"], 1);
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../docs/report.schema.json")).expect("schema");
    let errors = schema::Validator::new(&schema).validate(&report);
    assert!(
        errors.is_empty(),
        "/report against docs/report.schema.json: {errors:#?}"
    );
    let groups = report["groups"].as_array().expect("groups");
    assert!(
        groups
            .iter()
            .any(|g| g["pid"] == pid && g["sockets"].as_u64() >= Some(5)),
        "{groups:#?}"
    );
    assert_eq!(srv.get("/healthz"), (200, "ok\n".to_string()));
}

/// `/report` is made from the scan's look when it is asked for, after the
/// scan's report made the metrics and was freed: the two must still say the
/// same, and the same scan's `/report` must be the same bytes every time.
#[test]
fn the_report_and_the_metrics_of_one_scan_agree() {
    let mut svc = Leakyd::start();
    let srv = Server::start();
    svc.connect(3);
    let pid = svc.pid;
    srv.metrics_until("3 sockets for leakyd", |t| {
        close_wait(t, pid, "fork-parent-kept") == Some(3)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (metrics, bytes) = loop {
        let before = srv.get("/metrics").1;
        let first = srv.report_bytes();
        let again = srv.report_bytes();
        let after = srv.get("/metrics").1;
        let scans = |t: &str| value(t, "cwleak_scans_total");
        if scans(&before).is_some() && scans(&before) == scans(&after) {
            assert!(first == again, "one scan, two different /report answers");
            break (before, first);
        }
        // A scan ended in between: take the next one.
        assert!(
            Instant::now() < deadline,
            "scans never paused for a /report"
        );
    };
    let report: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON report");
    let findings = report["findings"].as_array().expect("findings");
    let series: Vec<(String, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("cwleak_findings{cause=\""))
        .filter_map(|l| {
            let (cause, n) = l.split_once("\"} ")?;
            Some((cause.to_string(), n.parse().ok()?))
        })
        .collect();
    assert!(series.len() >= 6, "{metrics}");
    for (cause, n) in &series {
        let in_report = findings
            .iter()
            .filter(|f| f["cause"] == cause.as_str())
            .count();
        assert_eq!(in_report as f64, *n, "cause {cause}: /report vs /metrics");
    }
    let group = report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["pid"] == pid)
        .unwrap_or_else(|| panic!("leakyd's group in /report"));
    assert_eq!(
        group["sockets"].as_u64().map(|n| n as f64),
        value(
            &metrics,
            &format!("cwleak_close_wait_sockets{{pid=\"{pid}\",cause=\"fork-parent-kept\"}}")
        ),
        "{metrics}"
    );
}

#[test]
fn bad_requests_get_http_errors_and_the_server_keeps_answering() {
    let srv = Server::start();
    srv.metrics_until("a first scan", |t| {
        t.contains("cwleak_last_scan_timestamp_seconds")
    });

    assert_eq!(srv.get("/nope").0, 404);
    let resp = srv
        .agent
        .post(&srv.url("/metrics"))
        .send_empty()
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD")
    );

    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let line = srv.raw(huge.as_bytes(), Duration::from_secs(10));
    assert!(line.starts_with("HTTP/1.1 431"), "huge headers: {line:?}");
    let line = srv.raw(b"GARBAGE\r\n\r\n", Duration::from_secs(10));
    assert!(line.starts_with("HTTP/1.1 400"), "garbage: {line:?}");

    // A client that sends half a request and waits: 408 after the head
    // timeout, and meanwhile everyone else is served.
    let addr = srv.addr;
    let (sent_tx, sent) = std::sync::mpsc::channel();
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .expect("half a request");
        sent_tx.send(()).expect("main thread");
        let line = status_line(&mut s);
        (line, Instant::now())
    });
    sent.recv_timeout(Duration::from_secs(20))
        .expect("the slow client connected");
    assert_eq!(srv.get("/healthz").0, 200);
    let healthz_answered = Instant::now();
    let (line, slow_answered) = slow.join().expect("slow client");
    assert!(line.starts_with("HTTP/1.1 408"), "slow client: {line:?}");
    assert!(
        healthz_answered < slow_answered,
        "/healthz was answered only after the slow client's head timeout"
    );

    // More connections than allowed at once, all idle: each new one sheds
    // the one that has waited longest without a request (503, closed), and
    // a real scrape still gets its answer while they are all held.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(srv.addr).expect("connect"))
        .collect();
    let mut shed = 0;
    for mut s in idle.iter().take(8).map(|s| s.try_clone().expect("clone")) {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        if status_line(&mut s).starts_with("HTTP/1.1 503") {
            shed += 1;
        }
    }
    assert_eq!(shed, 8, "the 8 oldest idle connections make room");
    assert_eq!(srv.get("/metrics").0, 200, "a scrape past 32 idle clients");
    drop(idle);
}

/// Idle and slow clients must not deny a well-behaved scraper: 200 idle
/// connections held open, then 50 clients that send a byte a second and
/// reconnect when dropped; every real scrape meanwhile is answered 200.
#[test]
fn idle_and_slow_clients_do_not_starve_a_scraper() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let srv = Server::start();
    srv.metrics_until("a first scan", |t| {
        t.contains("cwleak_last_scan_timestamp_seconds")
    });
    let addr = srv.addr;
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..50)
        .map(|_| {
            let (stop, connects) = (stop.clone(), connects.clone());
            std::thread::spawn(move || {
                let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
                while !stop.load(Ordering::SeqCst) {
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        continue;
                    };
                    connects.fetch_add(1, Ordering::SeqCst);
                    for b in request.iter() {
                        if stop.load(Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            })
        })
        .collect();
    // The slow clients are all connected (and reconnecting) before the scrapes.
    while connects.load(Ordering::SeqCst) < 50 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(srv.get("/metrics").0);
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    for t in slow {
        t.join().expect("slow client");
    }
    drop(idle);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "scrapes under 200 idle and 50 slow clients: {statuses:?}"
    );
}

/// Connections waiting in the accept queue of the listener on `port`
/// (/proc/net/tcp: a listener's rx_queue is its accept queue).
fn accept_queue(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[1].ends_with(&local) && f[3] == "0A")
        .and_then(|f| usize::from_str_radix(f[4].split(':').nth(1)?, 16).ok())
        .unwrap_or(0)
}

/// A request followed by a half-close (what `nc -N` sends) is answered:
/// the server has accepted and waits for the request; the request and the
/// FIN then arrive together. Several times: it was a race.
#[test]
fn a_request_then_a_half_close_is_answered() {
    let srv = Server::start();
    srv.metrics_until("a first scan", |t| {
        t.contains("cwleak_last_scan_timestamp_seconds")
    });
    for attempt in 0..20 {
        let mut s = TcpStream::connect(srv.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        while accept_queue(srv.addr.port()) > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Shapes the race (not a wait for a result): the server has read
        // nothing yet and waits, as it does for a client slower than loopback.
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "attempt {attempt}: {answer:?}"
        );
        assert!(
            answer.contains("cwleak_last_scan_timestamp_seconds"),
            "{answer}"
        );
    }
}

#[test]
fn sigterm_stops_it_cleanly() {
    let mut srv = Server::start();
    srv.metrics_until("a first scan", |t| {
        t.contains("cwleak_last_scan_timestamp_seconds")
    });
    srv.proc.signal(libc::SIGTERM);
    let st = srv
        .proc
        .wait_for(Duration::from_secs(15))
        .expect("serve ignored SIGTERM");
    assert_eq!(st.code(), Some(0));
    let mut said = Vec::new();
    while let Ok(l) = srv.stderr.recv_timeout(Duration::from_secs(5)) {
        said.push(l);
    }
    assert!(said.iter().any(|l| l.contains("stopped")), "{said:?}");
}

#[test]
fn a_port_in_use_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut g = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_cwleak"))
            .args(["serve", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let st = g.wait_for(Duration::from_secs(10)).expect("serve hung");
    assert_eq!(st.code(), Some(2));
}

/// `cwleak_tcp_sockets` for one namespace and state.
fn sockets_in(text: &str, netns: u64, state: &str) -> Option<u64> {
    let head = format!("cwleak_tcp_sockets{{netns=\"{netns}\",state=\"{state}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head)?.trim().parse().ok())
}

/// Sockets per state in the network namespace of `pid`, as `ss` counts them
/// there, in cwleak's state names.
fn ss_states(pid: u64) -> std::collections::BTreeMap<String, u64> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ss", "-tanH"])
        .output()
        .expect("nsenter ss");
    assert!(out.status.success(), "{out:?}");
    let mut counts = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(state) = line.split_whitespace().next() else {
            continue;
        };
        let name = match state {
            "ESTAB" => "ESTABLISHED".to_string(),
            "UNCONN" => "CLOSE".to_string(),
            "FIN-WAIT-1" => "FIN_WAIT1".to_string(),
            "FIN-WAIT-2" => "FIN_WAIT2".to_string(),
            s => s.replace('-', "_"),
        };
        *counts.entry(name).or_default() += 1;
    }
    counts
}

/// serve keeps records of CLOSE_WAIT sockets and listeners only and counts
/// the other states in the kernel's dump: every state of a namespace of its
/// own (the benchmark's load: ESTABLISHED pairs, CLOSE_WAIT sockets with
/// their FIN_WAIT2 peers, listeners) is exported as `ss` counts it there,
/// and /report's entry for the namespace counts them all.
#[test]
fn every_state_of_a_namespace_is_counted() {
    every_state_counted("serve::every_state_of_a_namespace_is_counted", &[]);
}

/// The same with the sockets followed (`--follow-sockets`): the counts and
/// records come from what the kernel's state-change tracepoint kept, not
/// from a walk of the namespace at each look.
#[test]
fn every_state_of_a_namespace_is_counted_when_followed() {
    every_state_counted(
        "serve::every_state_of_a_namespace_is_counted_when_followed",
        &["--follow-sockets"],
    );
}

fn every_state_counted(test: &str, extra: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip::skip(
            test,
            "loadgen needs root for a network namespace of its own",
        );
        return;
    }
    let bin = leakyd::example("loadgen");
    let mut load = Guarded::spawn(
        Command::new(bin)
            .args(["--sockets", "400", "--procs", "4"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let ready = leakyd::lines_of(load.child.stdout.take().expect("loadgen stdout"))
        .recv_timeout(Duration::from_secs(60))
        .expect("loadgen ready");
    let facts: serde_json::Value = serde_json::from_str(&ready).expect("loadgen facts");
    let (pid, netns) = (
        facts["pid"].as_u64().unwrap(),
        facts["netns"].as_u64().unwrap(),
    );
    let srv = Server::start_with(extra);
    // ss and a look agree once no socket is between states (a client's
    // FIN_WAIT1 becomes FIN_WAIT2 when its FIN is acknowledged).
    let truth = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let text = srv.metrics_until("every state of the load's namespace as ss counts it", |t| {
        let now = ss_states(pid);
        let exported = t
            .lines()
            .filter(|l| l.starts_with(&format!("cwleak_tcp_sockets{{netns=\"{netns}\",")))
            .filter(|l| !l.ends_with(" 0"))
            .count();
        let same = exported == now.len()
            && now
                .iter()
                .all(|(state, n)| sockets_in(t, netns, state) == Some(*n));
        *truth.borrow_mut() = now;
        same
    });
    let truth = truth.into_inner();
    assert_eq!(
        truth.get("CLOSE_WAIT"),
        facts["close_wait"].as_u64().as_ref(),
        "{text}"
    );
    assert_eq!(
        truth.get("ESTABLISHED"),
        facts["established"].as_u64().as_ref(),
        "{text}"
    );
    let report = srv.report();
    let ns = report["scan"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["inode"] == netns)
        .unwrap_or_else(|| panic!("namespace {netns} in /report"))
        .clone();
    assert_eq!(ns["sockets"].as_u64(), Some(truth.values().sum::<u64>()));
    assert_eq!(
        report["scan"]["states_read"].as_array().map(Vec::len),
        Some(12)
    );
    // Followed, not walking after a refusal.
    let said: Vec<String> = srv.stderr.try_iter().collect();
    assert!(!said.iter().any(|l| l.contains("not followed")), "{said:?}");
    drop(load.child.stdin.take());
}
