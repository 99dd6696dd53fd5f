//! `cwleak capture` and `scan --from`: a post-mortem taken during a real leak
//! gives the live scan's findings after the leak is gone; bad files get a
//! one-line error; secrets in command lines are masked; reads that would
//! block do not hang the capture.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::{args, cwleak, Scenario};

/// Checks `report` against the scenario's facts: exactly its sockets, each
/// with its recorded addresses and holders, and the scenario's cause.
fn assert_facts(report: &Value, facts: &Value, cause: &str) {
    let want: Vec<u64> = {
        let mut v: Vec<u64> = facts["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["inode"].as_u64().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(support::finding_inodes(report), want, "{report:#}");
    for fact in facts["sockets"].as_array().unwrap() {
        let f = support::finding(report, fact["inode"].as_u64().unwrap());
        assert_eq!(f["socket"]["local"], fact["local"], "{f:#}");
        assert_eq!(f["socket"]["remote"], fact["remote"], "{f:#}");
        assert_eq!(
            support::holders(f),
            support::pairs(&fact["holders"]),
            "{f:#}"
        );
        assert_eq!(support::cause(f), cause, "{f:#}");
    }
}

fn facts_of(fixture: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("fixtures/{fixture}/facts.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn a_capture_reads_back_into_the_scenarios_facts_after_the_leak_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hung.json.zst");
    let scenario = Scenario::start("fork-exited");
    let scope = args(["--pid".to_string(), scenario.driver().to_string()]);
    let facts = scenario.facts.clone();
    let run = cwleak(&args([
        "capture",
        "--settle",
        "0",
        "-o",
        file.to_str().unwrap(),
    ]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    drop(scenario);

    let mut from = scope.clone();
    from.extend(args(["--from", file.to_str().unwrap()]));
    let (code, report) = support::cwleak_json(&from);
    assert_eq!(code, 1);
    assert_facts(&report, &facts, "fork-parent-kept");
    assert_eq!(
        report["summary"]["by_cause"],
        serde_json::json!({"fork-parent-kept": facts["sockets"].as_array().unwrap().len()}),
    );

    // The text of the capture's own look is reproduced exactly, every time.
    let mut text = vec!["scan".to_string(), "--color".into(), "never".into()];
    text.extend(from.clone());
    let a = cwleak(&text);
    let b = cwleak(&text);
    assert_eq!(a.code, 1);
    assert_eq!(a.stdout, b.stdout);
    assert!(a.stdout.contains("fork-parent-kept"), "{}", a.stdout);
}

/// `--sample N` picks the N-th look. The looks must differ for that to be
/// seen: a capture of one recorded tree, then of another (the leak changed
/// between looks), joined into one file of two samples as `capture
/// --samples 2` writes it.
#[test]
fn several_looks_and_sample_choice() {
    let dir = tempfile::tempdir().unwrap();
    let capture_of = |fixture: &str| -> Value {
        let file = dir.path().join(format!("{fixture}.json"));
        let run = cwleak(&args([
            "capture",
            "--proc-root",
            &format!("fixtures/{fixture}/proc"),
            "-o",
            file.to_str().unwrap(),
        ]));
        assert_eq!(run.code, 0, "{}", run.stderr);
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap()
    };
    let mut joined = capture_of("never-closed");
    let later = capture_of("fork-alive");
    joined["samples"]
        .as_array_mut()
        .unwrap()
        .push(later["samples"][0].clone());
    let file = dir.path().join("looks.json.gz");
    {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&file).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(joined.to_string().as_bytes()).unwrap();
        gz.finish().unwrap();
    }
    let from = |sample: Option<&str>| -> Value {
        let mut a = args(["--from", file.to_str().unwrap()]);
        if let Some(n) = sample {
            a.extend(args(["--sample", n]));
        }
        let (code, report) = support::cwleak_json(&a);
        assert_eq!(code, 1);
        report
    };
    assert_facts(&from(Some("1")), &facts_of("never-closed"), "never-closed");
    assert_facts(
        &from(Some("2")),
        &facts_of("fork-alive"),
        "fork-parent-kept",
    );
    // No --sample: the last look.
    assert_facts(&from(None), &facts_of("fork-alive"), "fork-parent-kept");
    let scan_sample = |n: &str| {
        cwleak(&args([
            "scan",
            "--from",
            file.to_str().unwrap(),
            "--sample",
            n,
        ]))
    };
    let run = scan_sample("3");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("2 look(s)"), "{}", run.stderr);
    // Looks count from 1: 0 is refused, not read as the first.
    let run = scan_sample("0");
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("--sample"), "{}", run.stderr);
}

#[test]
fn bad_snapshot_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let run = cwleak(&args([
        "capture",
        "--proc-root",
        "fixtures/dup/proc",
        "-o",
        good.to_str().unwrap(),
    ]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bytes = std::fs::read(&good).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.json",
            bytes[..bytes.len() / 2].to_vec(),
            "truncated or corrupted",
        ),
        (
            "foreign.json",
            br#"{"hello": "world"}"#.to_vec(),
            "not a cwleak snapshot",
        ),
        (
            "text.json",
            b"just some text\n".to_vec(),
            "not a cwleak snapshot",
        ),
        (
            "future.json",
            String::from_utf8(bytes.clone())
                .unwrap()
                .replacen("\"schema_version\":1", "\"schema_version\":7", 1)
                .into_bytes(),
            "schema_version 7",
        ),
        (
            "bad.json.gz",
            vec![0x1f, 0x8b, 8, 0, 1, 2, 3],
            "bad.json.gz",
        ),
    ];
    for (name, content, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let run = cwleak(&args(["scan", "--from", p.to_str().unwrap()]));
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{name}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(want), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(name),
            "{name}: names the file: {}",
            run.stderr
        );
    }
    let run = cwleak(&args(["scan", "--from", "/nonexistent/snap.json"]));
    assert_eq!(run.code, 2);
}

/// A never-closing server whose command line carries secrets.
struct Python(std::process::Child);

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn command_lines_are_dropped_by_default_and_masked_on_request() {
    use std::io::{BufRead, BufReader};
    let code = "import socket,sys,time\n\
        l=socket.socket(); l.bind(('127.0.0.1',0)); l.listen(1)\n\
        print(l.getsockname()[1], flush=True)\n\
        c,_=l.accept(); c.recv(1)\n\
        print('eof', flush=True); time.sleep(60)\n";
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            code,
            "--password=hunter2",
            "--db",
            "postgres://app:s3cret@db/x",
            "--port",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let server = Python(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap();
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    line.clear();
    out.read_line(&mut line).unwrap();

    let dir = tempfile::tempdir().unwrap();
    for (cmdline, file) in [(false, "plain.json"), (true, "cmd.json")] {
        let path = dir.path().join(file);
        let mut a = args(["capture", "--settle", "0", "-o", path.to_str().unwrap()]);
        if cmdline {
            a.push("--cmdline".into());
        }
        let run = cwleak(&a);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("hunter2"),
            "a secret leaked into the snapshot"
        );
        assert!(
            !text.contains("s3cret"),
            "a URL password leaked into the snapshot"
        );
        let capture: Value = serde_json::from_str(&text).unwrap();
        let me = capture["samples"][0]["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == server.0.id())
            .cloned()
            .unwrap();
        if cmdline {
            let c = me["cmdline"].as_str().unwrap();
            assert!(
                c.contains("--password=***") && c.contains("postgres://app:***@db/x"),
                "{c}"
            );
            assert!(c.contains("--port 1"), "{c}");
        } else {
            assert!(me.get("cmdline").is_none(), "{me}");
        }
        // `scan --from` shows the recorded command line in every format,
        // masked as recorded; without --cmdline there is none to show.
        let pid = server.0.id().to_string();
        for format in ["text", "json", "markdown", "dot"] {
            let run = cwleak(&args([
                "scan",
                "--from",
                path.to_str().unwrap(),
                "--pid",
                &pid,
                "--format",
                format,
            ]));
            assert_eq!(run.code, 1, "{format}: {}", run.stderr);
            assert!(!run.stdout.contains("hunter2"), "{format}: {}", run.stdout);
            assert_eq!(
                run.stdout.contains("--password=***"),
                cmdline,
                "{format}: {}",
                run.stdout
            );
        }
    }
}

/// /proc/PID/cmdline blocks while the target holds its memory-map lock. A
/// FIFO in a recorded tree blocks the same read for ever: the capture must
/// give up on it, say so, and finish.
#[test]
fn a_blocking_read_is_given_up_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("proc");
    let status = std::process::Command::new("cp")
        .args(["-a", "fixtures/never-closed/proc"])
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success());
    let facts: Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/never-closed/facts.json").unwrap())
            .unwrap();
    let server = facts["server"]["pid"].as_i64().unwrap();
    nix::unistd::mkfifo(
        &tree.join(format!("{server}/cmdline")),
        nix::sys::stat::Mode::S_IRUSR,
    )
    .unwrap();
    let out = dir.path().join("snap.json");
    // cwleak() fails the test if the capture has not finished within its
    // timeout: a hang cannot pass.
    let run = cwleak(&args([
        "capture",
        "--cmdline",
        "--proc-root",
        tree.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (code, report) = support::cwleak_json(&args(["--from", out.to_str().unwrap()]));
    assert_eq!(code, 1, "the leak is still found");
    let timed_out: Vec<&Value> = report["scan"]["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["kind"] == "timed-out")
        .collect();
    assert_eq!(timed_out.len(), 1, "{}", report["scan"]);
    assert_eq!(timed_out[0]["pid"], server);
}
