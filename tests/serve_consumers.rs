#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `cwleak serve`'s /metrics read by the programs that consume it, against a
//! real leak (`leakyd fork`): `promtool check metrics` on what a plain
//! scraper gets (the 0.0.4 text format), the OpenMetrics parser of the
//! Prometheus Python client on what a scraper asking for OpenMetrics gets.
//! And an exporter run as an unprivileged user says, scan after scan, that
//! it could not read other users' processes.

#[path = "support/leakyd.rs"]
mod leakyd;
#[path = "support/serve.rs"]
mod serve;
#[path = "support/skip.rs"]
mod skip;

use leakyd::{Guarded, Leakyd};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Server {
    _proc: Guarded,
    addr: SocketAddr,
    agent: ureq::Agent,
}

impl Server {
    fn start(uid: Option<u32>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cwleak"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--interval", "500ms"])
            .args(["--settle", "100ms"])
            // Every blamed process its own series: other leaking processes
            // on this machine cannot fold the test's own leak into pid="other".
            .args(["--top", "1000000"]);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let s = serve::start(&mut cmd);
        Server {
            _proc: s.proc,
            addr: s.addr,
            agent: s.agent,
        }
    }

    /// (Content-Type, body) of /metrics with this Accept header (or none).
    fn metrics(&self, accept: Option<&str>) -> (String, String) {
        let mut req = self.agent.get(&format!("http://{}/metrics", self.addr));
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let mut resp = req.call().expect("GET /metrics");
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (ct, resp.body_mut().read_to_string().expect("body"))
    }

    fn until(&self, accept: Option<&str>, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = self.metrics(accept);
            if pred(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "never saw {what}:\n{body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Runs `cmd` with `input` on stdin: (success, stdout + stderr).
fn feed(cmd: &mut Command, input: &str) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn have(test: &str, cmd: &mut Command, install: &str) -> bool {
    let ok = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip::skip(test, &format!("missing: {install}"));
    }
    ok
}

#[test]
fn both_formats_pass_their_own_checkers() {
    let test = "both_formats_pass_their_own_checkers";
    if !have(
        test,
        Command::new("promtool").arg("--version"),
        "promtool (apt-get install prometheus)",
    ) || !have(
        test,
        Command::new("/usr/bin/python3")
            .args(["-c", "import prometheus_client.openmetrics.parser"]),
        "the OpenMetrics parser (apt-get install python3-prometheus-client)",
    ) {
        return;
    }
    let mut svc = Leakyd::start();
    svc.connect(2);
    let srv = Server::start(None);
    let pid = svc.pid;
    let series = format!("cwleak_close_wait_sockets{{pid=\"{pid}\",cause=\"fork-parent-kept\"}} 2");
    let text = srv.until(None, "leakyd's 2 sockets", |t| t.contains(&series));

    // A plain scrape: the 0.0.4 text format, which promtool checks.
    let (ct, text2) = srv.metrics(None);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    let (ok, said) = feed(Command::new("promtool").args(["check", "metrics"]), &text);
    assert!(ok, "promtool check metrics:\n{said}\n---\n{text}");
    assert!(
        !text.contains("# EOF") && !text2.contains("# UNIT"),
        "{text}"
    );
    assert!(text.contains("# TYPE cwleak_build_info gauge"), "{text}");
    assert!(
        text.contains(&format!(
            "cwleak_process_info{{pid=\"{pid}\",comm=\"leakyd\","
        )),
        "{text}"
    );
    assert!(
        value(&text, &format!("cwleak_process_max_fds{{pid=\"{pid}\"}}")).is_some(),
        "{text}"
    );
    // Every cause and every kind of unreadable path has its series, 0
    // included (other tests' leaks may be on this host: no value is assumed).
    for cause in [
        "fork-parent-kept",
        "inherited-no-cloexec",
        "never-closed",
        "dup-copy-kept",
        "passed-fd-kept",
        "no-visible-holder",
    ] {
        let s = format!("cwleak_findings{{cause=\"{cause}\"}}");
        assert!(value(&text, &s).is_some(), "{s}: {text}");
    }
    for kind in [
        "permission-denied",
        "vanished",
        "malformed",
        "net-table",
        "io",
        "timed-out",
    ] {
        let s = format!("cwleak_unreadable{{kind=\"{kind}\"}}");
        assert!(value(&text, &s).is_some(), "{s}: {text}");
    }

    // Asked for OpenMetrics (as Prometheus asks): OpenMetrics, which the
    // Python client's strict parser reads to the end.
    let accept =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let (ct, om) = srv.metrics(Some(accept));
    assert_eq!(ct, OPENMETRICS);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# UNIT cwleak_scan_duration_seconds seconds"),
        "{om}"
    );
    let parse = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
        fams = list(p(sys.stdin.read()))\n\
        for f in fams:\n    print(f.name, f.type, f.unit, len(f.samples))\n";
    let (ok, said) = feed(Command::new("/usr/bin/python3").args(["-c", parse]), &om);
    assert!(ok, "OpenMetrics parser:\n{said}\n---\n{om}");
    for want in [
        "cwleak_build info",
        "cwleak_process info",
        "cwleak_scans counter",
        "cwleak_scan_duration_seconds counter seconds",
        "cwleak_close_wait_sockets gauge",
    ] {
        assert!(said.contains(want), "{want} not parsed:\n{said}");
    }
}

/// Processes the exporter cannot read, as /proc says: owned by another user.
fn others_processes(uid: u32) -> usize {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() != uid))
        .count()
}

/// Run as nobody, the exporter reports the processes it cannot read on
/// every scan, not only the first (a later scan reuses what it read).
#[test]
fn an_unprivileged_exporter_keeps_reporting_what_it_cannot_read() {
    if !skip::is_root() {
        skip::skip(
            "an_unprivileged_exporter_keeps_reporting_what_it_cannot_read",
            "needs root to drop to another user",
        );
        return;
    }
    let srv = Server::start(Some(65534));
    let scans = |t: &str| value(t, "cwleak_scans_total").unwrap_or(0.0);
    let first = srv.until(None, "a first scan", |t| scans(t) >= 1.0);
    let later = srv.until(None, "three more scans", |t| {
        scans(t) >= scans(&first) + 3.0
    });
    let denied = value(&later, "cwleak_unreadable{kind=\"permission-denied\"}").expect("series");
    let truth = others_processes(65534) as f64;
    // Processes come and go between the two counts.
    assert!(
        denied >= truth * 0.8,
        "{denied} unreadable reported, /proc has {truth} processes of other users:\n{later}"
    );
}

/// The alert rules docs/fleet.md gives are valid for Prometheus, and use
/// only metric names the exporter writes.
#[test]
fn the_documented_alert_rules_pass_promtool() {
    if !have(
        "the_documented_alert_rules_pass_promtool",
        Command::new("promtool").arg("--version"),
        "promtool (apt-get install prometheus)",
    ) {
        return;
    }
    let doc = include_str!("../docs/fleet.md");
    let start = doc.find("```yaml\ngroups:").expect("an alert rules block") + "```yaml\n".len();
    let rules = &doc[start..start + doc[start..].find("```").expect("end of block")];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cwleak.rules.yml");
    std::fs::write(&path, rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}\n---\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let names = [
        "cwleak_close_wait_sockets",
        "cwleak_process_info",
        "cwleak_process_open_fds",
        "cwleak_process_max_fds",
        "cwleak_scan_errors_total",
        "cwleak_last_scan_timestamp_seconds",
    ];
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("cwleak_") {
            assert!(
                names.contains(&word),
                "{word} is not a metric cwleak writes"
            );
        }
    }
}
