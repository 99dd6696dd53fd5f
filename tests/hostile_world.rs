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

// ------------------------------------------------- a restricted /proc

const NOBODY: u32 = 65534;

/// cwleak's binary where `nobody` can run it (the build tree may sit in a
/// directory only root can enter).
struct SharedBinary {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl SharedBinary {
    fn new() -> SharedBinary {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("cwleak-hostile-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = dir.path().join("cwleak");
        // Copied by a child process, not std::fs::copy: a write fd to the
        // copy open in this process would also be open, until their exec, in
        // the children other tests' threads fork meanwhile, and exec'ing the
        // copy while one of them holds it fails with ETXTBSY.
        let cp = Command::new("cp")
            .arg(env!("CARGO_BIN_EXE_cwleak"))
            .arg(&path)
            .status()
            .expect("run cp");
        assert!(cp.success(), "cp cwleak: {cp}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        SharedBinary { _dir: dir, path }
    }
}

/// A port no socket of the host leaks on: one this test listens on and
/// nobody connects to (port 1, or any fixed port, may hold someone's leak).
fn quiet_port() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port().to_string();
    (l, port)
}

/// Run `program args` as nobody; with `hidepid`, in a private mount
/// namespace whose /proc is mounted `hidepid=2`.
fn as_nobody(program: &Path, argv: &[String], hidepid: bool) -> support::Run {
    use std::ffi::CString;
    use std::os::unix::process::CommandExt;
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (none, root, proc_, opts) = (c("none"), c("/"), c("proc"), c("hidepid=2"));
    let mut cmd = Command::new(program);
    cmd.args(argv)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe syscalls between fork and exec, on
    // strings made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if hidepid {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return fail();
                }
                let flags = libc::MS_REC | libc::MS_PRIVATE;
                if libc::mount(
                    none.as_ptr(),
                    root.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ) != 0
                {
                    return fail();
                }
                let target = c"/proc".as_ptr();
                if libc::mount(
                    proc_.as_ptr(),
                    target,
                    proc_.as_ptr(),
                    0,
                    opts.as_ptr().cast(),
                ) != 0
                {
                    return fail();
                }
            }
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return fail();
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run as nobody");
    support::Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn root_only(test: &str) -> bool {
    if skip::is_root() {
        return true;
    }
    skip::skip(
        test,
        "mounting /proc hidepid=2 and becoming nobody need root",
    );
    false
}

/// /proc mounted hidepid=2, cwleak run as nobody: the scenario's root-owned
/// holders are invisible, yet `ss` as the same user sees the sockets. cwleak
/// must find them too (its own namespace's table), and say what it could
/// not see; with nothing found it must not call that clean.
#[test]
fn hidepid_is_never_a_false_all_clear() {
    if !root_only("hidepid_is_never_a_false_all_clear") {
        return;
    }
    let s = support::Scenario::start("never-closed");
    let bin = SharedBinary::new();
    let port = s.port().to_string();

    // The truth, as the same user in the same /proc sees it.
    let ss = as_nobody(
        Path::new("ss"),
        &args([
            "-tanH",
            "state",
            "close-wait",
            "sport",
            &format!("= :{port}"),
        ]),
        true,
    );
    assert_eq!(ss.code, 0, "{}", ss.stderr);
    assert_eq!(
        ss.stdout.lines().count(),
        s.inodes().len(),
        "ss sees: {}",
        ss.stdout
    );

    let run = as_nobody(
        &bin.path,
        &args(["scan", "--format", "json", "--settle", "0", "--port", &port]),
        true,
    );
    assert_eq!(run.code, 1, "the leak is seen: {}", run.stderr);
    let r: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(
        support::finding_inodes(&r),
        support::sorted(s.inodes()),
        "{r:#}"
    );
    let gaps = r["scan"]["incomplete"].as_array().expect("scan.incomplete");
    assert!(
        gaps.iter().any(|g| g
            .as_str()
            .is_some_and(|g| g.contains("hides other users' processes"))),
        "{gaps:?}"
    );
    assert!(r["scan"]["unreadable"]
        .as_array()
        .expect("unreadable")
        .iter()
        .any(|u| u["kind"] == "incomplete"));

    // Nothing found in a scope it could not fully see: no all-clear.
    let (_quiet, quiet) = quiet_port();
    let run = as_nobody(
        &bin.path,
        &args(["scan", "--settle", "0", "--port", &quiet]),
        true,
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("INCOMPLETE"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("no CLOSE_WAIT leak;"),
        "{}",
        run.stdout
    );
    let run = as_nobody(
        &bin.path,
        &args(["check", "--no-config", "--settle", "0", "--port", &quiet]),
        true,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot pass on missing data"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("PASS"), "{}", run.stderr);
}

/// Without hidepid, a user who can read only their own processes: a check
/// of their own process stands (its fds and namespace are readable); a look
/// at the whole host, where most processes are unreadable, does not.
#[test]
fn an_unprivileged_user_checks_their_own_process_but_not_the_host() {
    if !root_only("an_unprivileged_user_checks_their_own_process_but_not_the_host") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let mut sleeper = Command::new("sleep")
        .arg("600")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    struct Reap<'a>(&'a mut std::process::Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let sleeper = Reap(&mut sleeper);
    let pid = sleeper.0.id().to_string();
    let bin = SharedBinary::new();
    let run = as_nobody(
        &bin.path,
        &args(["check", "--no-config", "--settle", "0", "--pid", &pid]),
        false,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("PASS"), "{}", run.stderr);

    // Truth: how much of the host nobody can read.
    let total = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count();
    let theirs = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::metadata(e.path())
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) != NOBODY)
        })
        .count();
    let (_quiet, quiet) = quiet_port();
    let run = as_nobody(
        &bin.path,
        &args(["scan", "--settle", "0", "--port", &quiet]),
        false,
    );
    if theirs * 2 > total + 2 {
        assert_eq!(
            run.code, 2,
            "{theirs} of {total} unreadable: {}",
            run.stdout
        );
        assert!(run.stdout.contains("could not be read"), "{}", run.stdout);
    } else {
        skip::skip(
            "an_unprivileged_user_checks_their_own_process_but_not_the_host (second half)",
            "most processes here belong to nobody",
        );
    }
}

/// `--netns` that names no network namespace is an error, like a bad --pid.
#[test]
fn a_netns_that_is_not_a_network_namespace_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("not-a-namespace");
    std::fs::write(&plain, "").expect("write");
    let bad = [
        (plain.display().to_string(), "not a namespace file"),
        ("/proc/self/ns/mnt".to_string(), "a mount namespace"),
        ("/proc/self/ns/uts".to_string(), "a UTS namespace"),
        (
            "99999999999".to_string(),
            "no network namespace with this inode",
        ),
    ];
    for (spec, why) in bad {
        for cmd in [
            &["check", "--no-config", "--settle", "0"][..],
            &["scan", "--settle", "0"][..],
        ] {
            let mut a = args(cmd);
            a.extend(args(["--netns", &spec]));
            let run = cwleak(&a);
            assert_eq!(run.code, 2, "{a:?}: {}", run.stderr);
            assert!(run.stderr.contains(why), "{a:?}: {}", run.stderr);
            assert!(!run.stderr.contains("PASS"), "{}", run.stderr);
        }
    }
    // A real one (our own) is accepted.
    let run = cwleak(&args([
        "check",
        "--no-config",
        "--settle",
        "0",
        "--netns",
        "/proc/self/ns/net",
        "--port",
        "1",
    ]));
    assert_ne!(run.code, 2, "{}", run.stderr);
}
