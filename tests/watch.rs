//! `cwleak watch` through a pipe against a real leak that grows: `leakyd
//! fork` keeps one CLOSE_WAIT socket per connection, and the test opens
//! connections while watch runs. Every process is killed and reaped when
//! its guard drops, also when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/leakyd.rs"]
mod leakyd;

use leakyd::{lines_of, Guarded, Leakyd};
use std::process::{Command, Stdio};
use std::time::Duration;

fn watch(args: &[String]) -> (Guarded, std::sync::mpsc::Receiver<String>) {
    let mut g = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_cwleak"))
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let out = lines_of(g.child.stdout.take().expect("watch stdout"));
    (g, out)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Every line until the output closes.
fn drain(out: &std::sync::mpsc::Receiver<String>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(l) = out.recv_timeout(Duration::from_secs(30)) {
        lines.push(l);
    }
    lines
}

/// The next line about `pid` of kind `kind` ("appeared", "grew", ...);
/// every line read on the way is kept in `seen`. The deadline only bounds
/// a hang: the line is what the test waits for.
fn next_line(
    out: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    pid: &str,
    kind: &str,
) -> String {
    loop {
        let l = out
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("no {kind} line for pid {pid}; so far:\n{}", seen.join("\n"))
            });
        seen.push(l.clone());
        if l.split_whitespace().nth(1) == Some(kind) && field(&l, "pid") == Some(pid) {
            return l;
        }
    }
}

/// The `grew` line about `pid` that reaches `count` (a look may catch the
/// connections half counted: the lines on the way are kept in `seen`).
fn grew_to(
    out: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    pid: &str,
    count: &str,
) -> String {
    loop {
        let l = next_line(out, seen, pid, "grew");
        if field(&l, "count") == Some(count) {
            return l;
        }
    }
}

#[test]
fn a_growing_leak_gives_one_line_per_change_and_fails_on_growth() {
    let mut svc = Leakyd::start();
    svc.connect(2);
    let pid = svc.pid.to_string();
    let (mut w, out) = watch(&[
        "--pid".into(),
        pid.clone(),
        "--interval".into(),
        "250ms".into(),
        "--fail-on-growth".into(),
    ]);
    // The first look (settled for one interval) counts the two; only then
    // does the leak grow, twice, each time once watch has counted the last.
    let mut seen = Vec::new();
    next_line(&out, &mut seen, &pid, "appeared");
    svc.connect(3);
    grew_to(&out, &mut seen, &pid, "5");
    svc.connect(3);
    grew_to(&out, &mut seen, &pid, "8");
    // Ctrl-C ends it with the summary; the status still tells the growth.
    w.signal(libc::SIGINT);
    let st = w
        .wait_for(Duration::from_secs(60))
        .expect("watch ignored SIGINT");
    seen.extend(drain(&out));
    let lines = seen;
    let text = lines.join("\n");
    assert_eq!(st.code(), Some(1), "--fail-on-growth; output:\n{text}");
    let mine: Vec<&String> = lines
        .iter()
        .filter(|l| field(l, "pid") == Some(&pid))
        .collect();
    let kind = |l: &str| l.split_whitespace().nth(1).map(str::to_string);
    let appeared: Vec<&&String> = mine
        .iter()
        .filter(|l| kind(l).as_deref() == Some("appeared"))
        .collect();
    assert_eq!(
        appeared.len(),
        1,
        "one appeared line for pid {pid}:\n{text}"
    );
    assert_eq!(field(appeared[0], "count"), Some("2"), "{text}");
    assert_eq!(field(appeared[0], "comm"), Some("leakyd"), "{text}");
    assert_eq!(
        field(appeared[0], "cause"),
        Some("fork-parent-kept"),
        "{text}"
    );
    let grew: Vec<u64> = mine
        .iter()
        .filter(|l| kind(l).as_deref() == Some("grew"))
        .map(|l| {
            field(l, "count")
                .and_then(|c| c.parse().ok())
                .expect("count")
        })
        .collect();
    assert!(
        grew.windows(2).all(|w| w[0] < w[1]),
        "grew lines go up: {grew:?}\n{text}"
    );
    assert_eq!(grew.last(), Some(&8), "{text}");
    // Nothing else moved: no line of another kind about it before the end.
    assert!(
        mine.iter()
            .all(|l| matches!(kind(l).as_deref(), Some("appeared" | "grew" | "final"))),
        "{text}"
    );
    let last = mine
        .iter()
        .find(|l| kind(l).as_deref() == Some("final"))
        .unwrap_or_else(|| panic!("no final line:\n{text}"));
    assert_eq!(
        (
            field(last, "first"),
            field(last, "count"),
            field(last, "change")
        ),
        (Some("2"), Some("8"), Some("+6")),
        "{text}"
    );
    let summary = lines
        .iter()
        .find(|l| kind(l).as_deref() == Some("summary"))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    assert_eq!(field(summary, "grew"), Some("1"), "{text}");
    // Nothing but logfmt lines into a pipe: no escape sequences.
    assert!(!text.contains('\x1b'), "{text}");
}

/// `--duration` ends watch by itself, with the summary; a leak that does
/// not grow passes `--fail-on-growth`.
#[test]
fn duration_ends_watch_and_a_steady_leak_passes() {
    let mut svc = Leakyd::start();
    svc.connect(2);
    let pid = svc.pid.to_string();
    let (mut w, out) = watch(&[
        "--pid".into(),
        pid.clone(),
        "--interval".into(),
        "200ms".into(),
        "--duration".into(),
        "1s".into(),
        "--fail-on-growth".into(),
    ]);
    let st = w
        .wait_for(Duration::from_secs(60))
        .expect("watch did not stop by itself");
    let lines = drain(&out);
    let text = lines.join("\n");
    assert_eq!(st.code(), Some(0), "nothing grew; output:\n{text}");
    let summary = lines
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some("summary"))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    assert_eq!(field(summary, "grew"), Some("0"), "{text}");
    let last = lines
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some("final") && field(l, "pid") == Some(&pid))
        .unwrap_or_else(|| panic!("no final line for pid {pid}:\n{text}"));
    assert_eq!(
        (field(last, "first"), field(last, "count")),
        (Some("2"), Some("2")),
        "{text}"
    );
}

#[test]
fn ctrl_c_prints_the_summary_and_exits_0() {
    let mut svc = Leakyd::start();
    svc.connect(1);
    let pid = svc.pid.to_string();
    let (mut w, out) = watch(&[
        "--pid".into(),
        pid.clone(),
        "--interval".into(),
        "200ms".into(),
    ]);
    // Wait for the first look (the leak appears), grow it, wait until
    // watch has counted the growth, then interrupt.
    let mut seen = Vec::new();
    next_line(&out, &mut seen, &pid, "appeared");
    svc.connect(1);
    grew_to(&out, &mut seen, &pid, "2");
    w.signal(libc::SIGINT);
    let st = w
        .wait_for(Duration::from_secs(60))
        .expect("watch ignored SIGINT");
    seen.extend(drain(&out));
    let text = seen.join("\n");
    assert_eq!(st.code(), Some(0), "{text}");
    assert!(text.contains(" summary looks="), "{text}");
    assert!(text.contains(" grew=1 "), "{text}");
}

#[test]
fn an_unknown_pid_is_an_error() {
    let (mut w, out) = watch(&[
        "--pid".into(),
        "999999999".into(),
        "--count".into(),
        "1".into(),
    ]);
    let st = w.wait_for(Duration::from_secs(30)).expect("watch hung");
    assert_eq!(st.code(), Some(2));
    assert!(drain(&out).is_empty());
}

#[test]
fn a_recorded_tree_is_watched_like_a_live_one() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fork-exited/proc");
    let (mut w, out) = watch(&[
        "--proc-root".into(),
        root.into(),
        "--interval".into(),
        "100ms".into(),
        "--count".into(),
        "3".into(),
    ]);
    let st = w.wait_for(Duration::from_secs(30)).expect("watch hung");
    let lines = drain(&out);
    let text = lines.join("\n");
    assert_eq!(st.code(), Some(0), "{text}");
    // The first look counts what it sees (a recorded tree has no settle
    // window); nothing changes after it.
    let appeared: Vec<&String> = lines.iter().filter(|l| l.contains(" appeared ")).collect();
    assert!(!appeared.is_empty(), "{text}");
    assert!(
        appeared
            .iter()
            .any(|l| field(l, "cause") == Some("fork-parent-kept")),
        "{text}"
    );
    assert!(!text.contains(" grew "), "{text}");
    assert!(text.contains(" summary looks=3 "), "{text}");
}

#[test]
fn help_lists_the_flags() {
    for (cmd, flags) in [
        (
            "watch",
            &[
                "--interval",
                "--count",
                "--duration",
                "--fail-on-growth",
                "--pid",
                "--port",
                "--netns",
                "--proc-root",
            ][..],
        ),
        (
            "serve",
            &["--listen", "--interval", "--top", "--settle", "--proc-root"][..],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cwleak"))
            .args([cmd, "--help"])
            .output()
            .expect("help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd} --help");
        for f in flags {
            assert!(text.contains(f), "{cmd} --help lacks {f}:\n{text}");
        }
    }
}

/// `cwleak watch | head -1`: the reader takes one line and exits; nothing
/// changes after it, so watch never writes again, and must still notice.
#[test]
fn a_reader_that_goes_away_ends_watch_with_status_0() {
    use std::io::{BufRead, BufReader};
    let mut svc = Leakyd::start();
    svc.connect(1);
    let mut w = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_cwleak"))
            .args(["watch", "--pid", &svc.pid.to_string()])
            .args(["--interval", "200ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = w.child.stdout.take().expect("watch stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read the first line");
    assert!(first.contains(" appeared "), "{first}");
    // The BufReader and the pipe's only read end are dropped here: head exited.
    let st = w
        .wait_for(Duration::from_secs(30))
        .expect("watch kept running after its reader went away");
    let mut err = String::new();
    if let Some(mut e) = w.child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert_eq!(st.code(), Some(0), "a closed pipe is not an error: {err}");
    assert!(err.is_empty(), "nothing to say about it: {err}");
}
