//! cwleak in a hostile world, built for real: secret-bearing files handed to
//! it as config and pidfile, a symlinked cwleak.toml owned by someone else,
//! a `hidepid=2` /proc in a private mount namespace read by an unprivileged
//! user, names that are not UTF-8 or that carry terminal controls.
//!
//! Every process a test starts is killed and reaped by a guard.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use support::{args, cwleak, skip};

/// A file that looks like /etc/shadow: no byte of it may reach the output.
const SECRET: &str = "root:$6$SALTSALT$HASHHASHSECRET:19700:0:99999:7:::\n";

fn assert_no_secret(what: &str, run: &support::Run) {
    for part in ["SALTSALT", "HASHHASHSECRET", "root:"] {
        assert!(
            !run.stderr.contains(part) && !run.stdout.contains(part),
            "{what} printed the file's content:\n{}{}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn a_secret_file_as_config_or_pidfile_is_never_quoted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("shadow");
    std::fs::write(&secret, SECRET).expect("write");
    let path = secret.display().to_string();
    let me = std::process::id().to_string();

    let run = cwleak(&args(["check", "--pid", &me, "--config", &path]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_secret("--config", &run);
    assert!(
        run.stderr.contains(&path) && run.stderr.contains("line 1, column"),
        "the error names the file and the place: {}",
        run.stderr
    );

    let run = cwleak(&args(["check", "--no-config", "--pidfile", &path]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_secret("--pidfile", &run);
    assert!(
        run.stderr.contains(&path) && run.stderr.contains("expected a positive decimal pid"),
        "{}",
        run.stderr
    );

    // Valid TOML whose values are the secret: the type error names the key's
    // place and what was expected, not the value.
    std::fs::write(&secret, "[check]\nmax = \"HASHHASHSECRET\"\n").expect("write");
    let run = cwleak(&args(["check", "--pid", &me, "--config", &path]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_secret("a typed value", &run);
    assert!(run.stderr.contains("line 2, column 7"), "{}", run.stderr);
}

#[test]
fn a_discovered_symlink_to_someone_elses_file_is_refused() {
    if !skip::is_root() {
        skip::skip(
            "a_discovered_symlink_to_someone_elses_file_is_refused",
            "chown needs root",
        );
        return;
    }
    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(repo.path().join(".git")).expect(".git");
    let target = repo.path().join("elsewhere.toml");
    std::fs::write(&target, SECRET).expect("write");
    // nobody's file; the symlink, like a checkout, is ours (root's).
    std::os::unix::fs::chown(&target, Some(65534), Some(65534)).expect("chown");
    std::os::unix::fs::symlink(&target, repo.path().join("cwleak.toml")).expect("symlink");
    let me = std::process::id().to_string();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cwleak"))
            .args(["check", "--settle", "0", "--pid", &me])
            .args(extra)
            .current_dir(repo.path())
            .stdin(Stdio::null())
            .output()
            .expect("run cwleak");
        support::Run {
            code: out.status.code().expect("exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    };
    let refused = run(&[]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_no_secret("a discovered symlink", &refused);
    assert!(
        refused.stderr.contains("refused") && refused.stderr.contains("uid 65534"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        refused.stderr.trim().lines().count(),
        1,
        "{}",
        refused.stderr
    );
    // Owned by us, the same link is read (and its bad content not quoted).
    std::os::unix::fs::chown(&target, Some(0), Some(0)).expect("chown");
    let read = run(&[]);
    assert_eq!(read.code, 2, "{}", read.stderr);
    assert!(!read.stderr.contains("refused"), "{}", read.stderr);
    assert_no_secret("a symlink we own", &read);
    assert!(Path::new(&target).exists());
}

/// A real process holding one CLOSE_WAIT socket, with a name it chose
/// itself (prctl(PR_SET_NAME), any bytes) and a hostile command line; run as
/// `uid` when given. Killed and reaped on drop.
struct NamedHolder {
    child: std::process::Child,
    pid: i32,
    port: u16,
}

/// The holder: listen, connect to itself, accept, close the client end (the
/// accepted socket is then in CLOSE_WAIT), print "PORT PID", wait for EOF.
const HOLDER: &str = r#"
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[1])), 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_NAME) failed")
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
cli = socket.create_connection(srv.getsockname())
acc, _ = srv.accept()
cli.close()
print(srv.getsockname()[1], os.getpid(), flush=True)
sys.stdin.read()
"#;

impl NamedHolder {
    fn start(name: &[u8], arg: &str, uid: Option<u32>) -> NamedHolder {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        let mut cmd = Command::new("python3");
        cmd.args(["-c", HOLDER, &hex, arg])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd.spawn().expect("spawn python3");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let read = std::io::BufReader::new(out).read_line(&mut line);
        let mut h = NamedHolder {
            child,
            pid: 0,
            port: 0,
        };
        let mut words = line.split_whitespace();
        match (read, words.next(), words.next()) {
            (Ok(_), Some(port), Some(pid)) => {
                h.port = port.parse().expect("port");
                h.pid = pid.parse().expect("pid");
            }
            _ => panic!("the holder said {line:?}"),
        }
        h
    }
}

impl Drop for NamedHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Controls, CSI (ESC [ and U+009B), CR, a bidi override, zero-width.
const SPOOFS: [&str; 7] = [
    "\u{1b}", "\r", "\u{9b}", "\u{202e}", "\u{200b}", "\u{2066}", "\u{feff}",
];

fn assert_neutral(what: &str, text: &str) {
    for s in SPOOFS {
        assert!(
            !text.contains(s),
            "{what} shows {s:?} as it is:\n{}",
            text.escape_debug()
        );
    }
}

/// Not UTF-8 (0xff), an escape sequence, a bidi override, a CR, a C1 CSI:
/// 13 bytes, under the kernel's 15.
const HOSTILE_NAME: &[u8] = b"\xffe\x1b[2J\xe2\x80\xae\r\xc2\x9bz";

#[test]
fn a_name_that_is_not_utf8_is_data_and_the_uid_is_still_read() {
    if !skip::is_root() {
        skip::skip(
            "a_name_that_is_not_utf8_is_data_and_the_uid_is_still_read",
            "running the holder as another user needs root",
        );
        return;
    }
    let h = NamedHolder::start(HOSTILE_NAME, "plain", Some(65534));
    // Truth from outside cwleak: the kernel has the bytes, and the uid.
    let comm = std::fs::read(format!("/proc/{}/comm", h.pid)).expect("comm");
    assert_eq!(comm.strip_suffix(b"\n"), Some(HOSTILE_NAME));
    let meta = std::fs::metadata(format!("/proc/{}", h.pid)).expect("proc dir");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);

    let (code, r) = support::cwleak_json(&args(["--pid", &h.pid.to_string()]));
    assert_eq!(code, 1, "its CLOSE_WAIT socket is a leak");
    let procs = r["processes"].as_array().expect("processes");
    let p = procs
        .iter()
        .find(|p| p["pid"] == h.pid)
        .unwrap_or_else(|| panic!("pid {} not in {procs:?}", h.pid));
    assert_eq!(p["uid"], 65534, "{p}");
    let malformed: Vec<_> = r["scan"]["unreadable"]
        .as_array()
        .expect("unreadable")
        .iter()
        .filter(|u| u["pid"] == h.pid)
        .collect();
    assert!(malformed.is_empty(), "{malformed:?}");
    assert!(
        p["comm"].as_str().expect("comm").ends_with('z'),
        "the name is kept (lossily): {p}"
    );
}

#[test]
fn hostile_names_and_command_lines_are_shown_neutralised() {
    let h = NamedHolder::start(
        HOSTILE_NAME,
        "\u{202e}txt.exe\u{200b}\r\u{1b}]0;owned\u{7}\u{2066}\u{feff}",
        None,
    );
    let pid = h.pid.to_string();
    for format in ["text", "markdown"] {
        let run = support::cwleak_scan(format, &args(["--pid", &pid, "--color", "never"]));
        assert_eq!(run.code, 1, "{format}: {}", run.stderr);
        assert!(run.stdout.contains(&h.port.to_string()), "{}", run.stdout);
        assert_neutral(format, &run.stdout);
        assert_neutral(&format!("{format} stderr"), &run.stderr);
    }
    // JUnit: the case name and the failure text.
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("junit.xml");
    let run = cwleak(&args([
        "check",
        "--no-config",
        "--settle",
        "0",
        "--pid",
        &pid,
        "--junit",
        &junit.display().to_string(),
    ]));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_neutral("check's summary", &run.stderr);
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains(&format!("pid {pid}")), "{xml}");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed JUnit");
    let text: String = doc
        .descendants()
        .flat_map(|n| {
            let attrs: Vec<String> = n.attributes().map(|a| a.value().to_string()).collect();
            attrs.into_iter().chain(n.text().map(str::to_string))
        })
        .collect();
    assert_neutral("junit", &text);
    // The command line is data: kept in a capture as it is (JSON-escaped
    // controls, the rest verbatim), for a consumer to treat as text.
    let cap = dir.path().join("cap.json");
    let run = cwleak(&args([
        "capture",
        "--cmdline",
        "--settle",
        "0",
        "-o",
        &cap.display().to_string(),
    ]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let raw = std::fs::read_to_string(&cap).expect("capture");
    let v: serde_json::Value = serde_json::from_str(&raw).expect("capture is JSON");
    assert!(
        !raw.contains('\u{1b}') && !raw.contains('\r'),
        "controls escaped"
    );
    let found = v.to_string().contains("\u{202e}txt.exe\u{200b}");
    assert!(found, "the command line kept as data");
}
