//! A hostile world for cwleak's inputs and outputs, built for real: a tmpfs
//! that fills up while a snapshot is written (in a private mount namespace),
//! a signal while the temporary file exists (the writes slowed down by
//! strace), character and block devices made by mknod, FIFOs, symlinks into
//! /proc, decompression bombs under a memory measurement (the kernel's peak
//! RSS of the child), pipes as snapshot files, and a stderr that cannot be
//! written (/dev/full, a closed pipe).
//!
//! Every process a test starts is killed and reaped by a guard, also when the
//! test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::{skip, Scenario};

/// Longest a cwleak run may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(120);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cwleak")
}

/// A child killed and reaped on drop.
struct Reaped(Option<Child>);

impl Reaped {
    fn spawn(cmd: &mut Command) -> Reaped {
        Reaped(Some(cmd.spawn().expect("spawn")))
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.as_ref().expect("running").id()).expect("pid")
    }

    /// Wait (a hang fails the test); the exit status and the child's peak
    /// resident memory in KiB, as the kernel counted it.
    // Reaped by wait4 (for its rusage), which Child does not know about.
    #[allow(clippy::zombie_processes)]
    fn wait(mut self) -> (ExitStatus, i64) {
        let mut child = self.0.take().expect("running");
        let pid = i32::try_from(child.id()).expect("pid");
        let deadline = Instant::now() + HANG;
        loop {
            let mut status = 0;
            // SAFETY: plain syscall on our own unreaped child; rusage is
            // plain data.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            let r = unsafe { libc::wait4(pid, &raw mut status, libc::WNOHANG, &raw mut usage) };
            if r == pid {
                // Reaped: Child must not wait or kill it again.
                std::mem::forget(child);
                return (ExitStatus::from_raw(status), usage.ru_maxrss);
            }
            assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("a child did not finish within {HANG:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `cwleak ARGS` with stdout and stderr into files: (status, stdout, stderr).
fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&o).unwrap())
        .stderr(fs::File::create(&e).unwrap());
    let (status, _) = Reaped::spawn(&mut cmd).wait();
    (
        status,
        fs::read_to_string(&o).unwrap(),
        fs::read_to_string(&e).unwrap(),
    )
}

/// A process to scope a `check` on: `sleep`, reaped on drop.
fn sleeper() -> Reaped {
    Reaped::spawn(Command::new("sleep").arg("600").stdin(Stdio::null()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ------------------------------------------------------------- full disk

/// Per format: a capture onto a tmpfs with less room than the snapshot
/// needs (half of it, rounded down to pages: none at all for a small one)
/// exits 2 and leaves the directory as it was: no file, no temporary file;
/// an existing file keeps its content.
#[test]
fn a_filesystem_that_fills_up_fails_the_capture_and_leaves_nothing() {
    const TEST: &str = "a_filesystem_that_fills_up_fails_the_capture_and_leaves_nothing";
    if !skip::is_root() || !have("unshare") {
        skip::skip(
            TEST,
            "needs root and unshare(1) to mount a tmpfs in a private namespace",
        );
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    for name in ["snap.json", "snap.json.gz", "snap.json.zst"] {
        // How big the snapshot of this machine is, written where there is room.
        let roomy = scratch.path().join(name);
        let (st, _, err) = run(&["capture", "--settle", "0", "-o", roomy.to_str().unwrap()]);
        assert!(st.success(), "{err}");
        let size = fs::metadata(&roomy).unwrap().len();
        // At most half the 1 MiB tmpfs: a busy host's snapshot can be larger
        // than the whole filesystem, and then it fails to fit all the same.
        let free_pages = (size / 2 / 4096).min(128);
        for existing in [false, true] {
            let mnt = tempfile::tempdir().unwrap();
            let script = r#"
                set -e
                mount -t tmpfs -o size=1m,mode=0755 cwleak-test "$MNT"
                cd "$MNT"
                if [ "$EXISTING" = 1 ]; then printf old > "$NAME"; fi
                # All the room but FREE pages taken (tmpfs counts in pages;
                # an existing file holds one).
                head -c $(( (256 - EXISTING - FREE) * 4096 )) /dev/zero > ballast
                set +e
                "$CWLEAK" capture --settle 0 -o "$NAME"
                echo "status=$?"
                df -B1 --output=avail . | tail -1 | sed 's/^ */avail=/'
                ls -A | sed 's/^/entry=/'
                if [ -e "$NAME" ]; then echo "content=$(cat "$NAME")"; fi
            "#;
            let out = Command::new("unshare")
                .args(["-m", "--propagation", "private", "sh", "-c", script])
                .env("MNT", mnt.path())
                .env("NAME", name)
                .env("FREE", free_pages.to_string())
                .env("EXISTING", if existing { "1" } else { "0" })
                .env("CWLEAK", bin())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!(
                "{name} ({size} bytes) with {free_pages} free page(s), existing: {existing}\n\
                 stdout:\n{stdout}\nstderr:\n{stderr}"
            );
            assert!(stdout.contains("status=2\n"), "{what}");
            assert!(
                stderr.contains("No space left on device"),
                "the error says why: {what}"
            );
            let entries: Vec<&str> = stdout
                .lines()
                .filter_map(|l| l.strip_prefix("entry="))
                .collect();
            if existing {
                assert_eq!(entries, ["ballast", name], "{what}");
                assert!(stdout.contains("content=old\n"), "kept: {what}");
            } else {
                assert_eq!(entries, ["ballast"], "nothing at the target: {what}");
            }
        }
    }
}

// ------------------------------------------------------------- signals

/// A capture (and a check writing its report) whose writes are slowed down
/// (strace delays each write(2)) is sent SIGTERM or SIGINT while its
/// temporary file exists: it dies of the signal (as a shell reports it:
/// 128+N) and leaves no file.
#[test]
fn a_signal_while_writing_leaves_no_temporary_file() {
    const TEST: &str = "a_signal_while_writing_leaves_no_temporary_file";
    if !have("strace") {
        skip::skip(TEST, "strace(1) is not installed");
        return;
    }
    let svc = sleeper();
    let pid = svc.pid().to_string();
    let capture = ["capture", "--settle", "0", "-o"];
    let check = ["check", "--pid", &pid, "--settle", "0", "--report"];
    for (sig, args) in [
        (libc::SIGTERM, &capture[..]),
        (libc::SIGINT, &capture[..]),
        (libc::SIGTERM, &check[..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.json");
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=write"])
            .args(["-e", "inject=write:delay_enter=300000", bin()])
            .args(args)
            .arg(&target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec. A
        // background job may have been started with SIGINT ignored, and an
        // ignored signal stays ignored across exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                Ok(())
            });
        }
        let strace = Reaped::spawn(&mut cmd);
        let deadline = Instant::now() + HANG;
        let temp = loop {
            if let Some(t) = names(dir.path()).into_iter().find(|n| n.ends_with(".tmp")) {
                break t;
            }
            assert!(Instant::now() < deadline, "no temporary file appeared");
            std::thread::sleep(Duration::from_millis(2));
        };
        let children =
            fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.pid())).unwrap();
        let cwleak: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
        assert!(
            fs::read_link(format!("/proc/{cwleak}/exe"))
                .unwrap()
                .ends_with("cwleak"),
            "strace's child is cwleak"
        );
        // SAFETY: plain syscall to the traced child, alive (its temporary
        // file exists) and not reaped (strace waits for it).
        assert_eq!(unsafe { libc::kill(cwleak, sig) }, 0);
        let (status, _) = strace.wait();
        // strace dies of the signal its tracee died of.
        assert_eq!(status.signal(), Some(sig), "{status:?}");
        assert_eq!(
            names(dir.path()),
            Vec::<String>::new(),
            "{args:?}: {temp} was left behind after signal {sig}"
        );
    }
}

// ------------------------------------------------------------- targets

/// Outputs onto what is not a regular file: devices and FIFOs are written
/// through and stay what they were, a link into /proc writes into the open
/// file, a link to a file keeps the link, a block device and a directory are
/// refused with exit 2.
#[test]
fn devices_fifos_and_links_are_written_through_never_replaced() {
    const TEST: &str = "devices_fifos_and_links_are_written_through_never_replaced";
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let svc = sleeper();
    let pid = svc.pid().to_string();

    // A FIFO read by another process gets the whole report.
    let fifo = d("report.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            fs::File::open(&fifo)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        })
    };
    let (st, _, err) = run(&[
        "check",
        "--pid",
        &pid,
        "--settle",
        "0",
        "--report",
        &s(&fifo),
    ]);
    assert_eq!(st.code(), Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&reader.join().unwrap()).unwrap();
    assert_eq!(report["check"]["passed"], true);
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    // A link to /proc/self/fd/1: the JUnit goes to cwleak's stdout.
    let link = d("junit.xml");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    let (st, out, err) = run(&[
        "check",
        "--pid",
        &pid,
        "--settle",
        "0",
        "--junit",
        &s(&link),
    ]);
    assert_eq!(st.code(), Some(0), "{err}");
    roxmltree::Document::parse(&out).expect("JUnit XML on stdout");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("/proc/self/fd/1"));

    // A link to a regular file: the file gets the snapshot, the link stays.
    let real = d("real.json");
    fs::write(&real, "old").unwrap();
    let snap_link = d("latest.json");
    std::os::unix::fs::symlink("real.json", &snap_link).unwrap();
    let (st, _, err) = run(&["capture", "--settle", "0", "-o", &s(&snap_link)]);
    assert!(st.success(), "{err}");
    assert!(fs::symlink_metadata(&snap_link)
        .unwrap()
        .file_type()
        .is_symlink());
    let (st, _, err) = run(&["scan", "--from", &s(&real), "--format", "json"]);
    assert!(st.code() == Some(0) || st.code() == Some(1), "{err}");

    // A directory is refused.
    let (st, _, err) = run(&[
        "check",
        "--pid",
        &pid,
        "--settle",
        "0",
        "--report",
        &s(&d("")),
    ]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("is a directory"), "{err}");

    let before = names(dir.path());
    if !skip::is_root() {
        skip::skip(TEST, "the device part needs root (mknod)");
        return;
    }
    let mknod = |name: &str, kind: &str, major: u32, minor: u32| {
        let p = d(name);
        let ok = Command::new("mknod")
            .args([
                "-m",
                "0666",
                &s(&p),
                kind,
                &major.to_string(),
                &minor.to_string(),
            ])
            .status()
            .unwrap();
        assert!(ok.success(), "mknod {name}");
        p
    };
    // The null and full devices, made here: the host's are not put at risk.
    let null = mknod("null", "c", 1, 3);
    let full = mknod("full", "c", 1, 7);
    for (args, out) in [
        (vec!["capture", "--settle", "0", "-o"], &null),
        (
            vec!["check", "--pid", &pid, "--settle", "0", "--report"],
            &null,
        ),
        (
            vec!["check", "--pid", &pid, "--settle", "0", "--junit"],
            &null,
        ),
    ] {
        let mut a = args.clone();
        a.push(out.to_str().unwrap());
        let (st, _, err) = run(&a);
        assert_eq!(st.code(), Some(0), "{a:?}: {err}");
        let t = fs::symlink_metadata(out).unwrap().file_type();
        assert!(t.is_char_device(), "{a:?} replaced the device");
    }
    // Writing into /dev/full fails: exit 2, the device stays.
    let (st, _, err) = run(&["capture", "--settle", "0", "-o", &s(&full)]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(fs::symlink_metadata(&full)
        .unwrap()
        .file_type()
        .is_char_device());
    let (st, _, err) = run(&[
        "check",
        "--pid",
        &pid,
        "--settle",
        "0",
        "--junit",
        &s(&full),
    ]);
    assert_eq!(st.code(), Some(2), "{err}");
    // A block device (a number no driver has here: a bug could not reach a
    // disk) is refused before it is opened.
    let devices = fs::read_to_string("/proc/devices").unwrap();
    let used: Vec<u32> = devices
        .split("Block devices:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let major = (240..=254)
        .find(|m| !used.contains(m))
        .expect("a free major");
    let block = mknod("disk", "b", major, 0);
    let (st, _, err) = run(&["capture", "--settle", "0", "-o", &s(&block)]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("block device"), "{err}");
    assert!(fs::symlink_metadata(&block)
        .unwrap()
        .file_type()
        .is_block_device());
    let mut after = before;
    after.extend(["disk", "full", "null"].map(String::from));
    after.sort();
    assert_eq!(names(dir.path()), after, "no other file was made");
    assert_eq!(
        fs::metadata(&null).unwrap().permissions().mode() & 0o777,
        0o666
    );
}

// ------------------------------------------------------------- bombs

/// A file of `count` gzip members, each `chunk` compressed, after one member
/// holding `head`: small on disk, `count * chunk.len()` bytes decompressed.
fn gzip_bomb(path: &Path, head: &[u8], chunk: &[u8], count: usize) {
    let member = |bytes: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    };
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    f.write_all(&member(head)).unwrap();
    let m = member(chunk);
    for _ in 0..count {
        f.write_all(&m).unwrap();
    }
    f.flush().unwrap();
}

fn zstd_bomb(path: &Path, head: &[u8], chunk: &[u8], count: usize) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    f.write_all(&zstd::encode_all(head, 19).unwrap()).unwrap();
    let m = zstd::encode_all(chunk, 19).unwrap();
    for _ in 0..count {
        f.write_all(&m).unwrap();
    }
    f.flush().unwrap();
}

/// Bombs of 4 GiB (zeros; whitespace, then a string, inside a snapshot's
/// envelope) and /dev/zero: refused with exit 2 and a one-line reason, the
/// peak resident memory of cwleak (the kernel's count) far below the size.
#[test]
fn decompression_bombs_are_refused_without_the_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mib = vec![0u8; 1 << 20];
    let spaces = vec![b' '; 1 << 20];
    let letters = vec![b'a'; 1 << 20];
    let envelope = br#"{"format":"cwleak-snapshot","schema_version":1,"tool_version":"0","cmdline_kept":false,"settle_ms":0,"interval_ms":0,"samples":[{"meta":{"hostname":"#;
    let with_string = [envelope.as_slice(), b"\""].concat();
    let gz_zeros = dir.path().join("zeros.json.gz");
    gzip_bomb(&gz_zeros, b"", &mib, 4096);
    let zst_zeros = dir.path().join("zeros.json.zst");
    zstd_bomb(&zst_zeros, b"", &mib, 4096);
    let gz_spaces = dir.path().join("spaces.json.gz");
    gzip_bomb(&gz_spaces, envelope, &spaces, 4096);
    let zst_string = dir.path().join("string.json.zst");
    zstd_bomb(&zst_string, &with_string, &letters, 4096);
    for p in [&gz_zeros, &zst_zeros, &gz_spaces, &zst_string] {
        assert!(fs::metadata(p).unwrap().len() < 64 << 20, "{p:?} is small");
    }
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let cases: [(Vec<String>, &str); 5] = [
        (vec![s(&gz_zeros)], "not a JSON object"),
        (vec![s(&zst_zeros)], "not a JSON object"),
        (vec!["/dev/zero".into()], "not a JSON object"),
        (vec![s(&zst_string)], "a string longer than 16 MiB"),
        // The whole cap is read here: a small one keeps the test short.
        (
            vec![s(&gz_spaces), "--max-snapshot-size".into(), "32M".into()],
            "more than 32 MiB once decompressed",
        ),
    ];
    for (from, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let err_path = dir.path().join("err");
        let mut cmd = Command::new(bin());
        cmd.args(["scan", "--from"])
            .args(&from)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err_path).unwrap());
        let (status, peak_kib) = Reaped::spawn(&mut cmd).wait();
        let err = fs::read_to_string(&err_path).unwrap();
        assert_eq!(status.code(), Some(2), "{from:?}: {err}");
        assert!(err.contains(want), "{from:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            peak_kib < 160 * 1024,
            "{from:?}: peak RSS {peak_kib} KiB for a 4 GiB bomb"
        );
    }
}

// ------------------------------------------------------------- pipes

/// A snapshot read from a FIFO, from a pipe as /dev/stdin and from
/// /proc/self/fd/0: the findings of the file itself.
#[test]
fn snapshots_are_read_from_pipes_and_fifos() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/snapshots/scm-rights.json.zst");
    let bytes = fs::read(&file).unwrap();
    let findings = |stdout: &str| -> usize {
        let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
        v["findings"].as_array().unwrap().len()
    };
    let (st, out, err) = run(&["scan", "--from", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(st.code(), Some(1), "{err}");
    let want = findings(&out);
    assert!(want > 0);

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("snap.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let writer = {
        let (fifo, bytes) = (fifo.clone(), bytes.clone());
        std::thread::spawn(move || {
            fs::OpenOptions::new()
                .write(true)
                .open(&fifo)?
                .write_all(&bytes)
        })
    };
    let (st, out, err) = run(&["scan", "--from", fifo.to_str().unwrap(), "--format", "json"]);
    writer.join().unwrap().unwrap();
    assert_eq!(st.code(), Some(1), "FIFO: {err}");
    assert_eq!(findings(&out), want);

    for stdin_name in ["/dev/stdin", "/proc/self/fd/0"] {
        let out_path = dir.path().join("out");
        let mut cmd = Command::new(bin());
        cmd.args(["scan", "--from", stdin_name, "--format", "json"])
            .stdin(Stdio::piped())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(Stdio::null());
        let mut child = Reaped::spawn(&mut cmd);
        let mut stdin = child.0.as_mut().unwrap().stdin.take().unwrap();
        let feed = {
            let bytes = bytes.clone();
            std::thread::spawn(move || stdin.write_all(&bytes))
        };
        let (st, _) = child.wait();
        feed.join().unwrap().unwrap();
        assert_eq!(st.code(), Some(1), "{stdin_name}");
        assert_eq!(findings(&fs::read_to_string(&out_path).unwrap()), want);
    }
}

// ------------------------------------------------------------- stderr

/// `cwleak ARGS` with stderr onto /dev/full, then onto a pipe whose reader
/// is gone: the exit status is the documented one either way.
fn exit_with_broken_stderr(args: &[&str]) -> [Option<i32>; 2] {
    let full = {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            );
        Reaped::spawn(&mut cmd).wait().0.code()
    };
    let closed = {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(w));
        Reaped::spawn(&mut cmd).wait().0.code()
    };
    [full, closed]
}

#[test]
fn a_stderr_that_cannot_be_written_keeps_the_exit_status() {
    let scenario = Scenario::start("fork-exited");
    let pid = scenario.driver().to_string();
    // A leak in scope: 1, with the text on stdout and the error-free path.
    assert_eq!(
        exit_with_broken_stderr(&["scan", "--pid", &pid, "--settle", "0"]),
        [Some(1); 2]
    );
    // check writes its summary on stderr.
    assert_eq!(
        exit_with_broken_stderr(&["check", "--pid", &pid, "--settle", "0"]),
        [Some(1); 2]
    );
    let clean = sleeper();
    let clean_pid = clean.pid().to_string();
    assert_eq!(
        exit_with_broken_stderr(&["check", "--pid", &clean_pid, "--settle", "0"]),
        [Some(0); 2]
    );
    // Errors: the message cannot be written, the status is still 2.
    for args in [
        vec!["check", "--pid", "2147483646"],
        vec!["scan", "--from", "/dev/zero"],
        vec!["scan", "--no-such-flag"],
        vec!["capture", "-o", "/dev/full", "--settle", "0"],
    ] {
        assert_eq!(exit_with_broken_stderr(&args), [Some(2); 2], "{args:?}");
    }
    // A capture says where it wrote on stderr.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.json");
    assert_eq!(
        exit_with_broken_stderr(&["capture", "--settle", "0", "-o", out.to_str().unwrap()]),
        [Some(0); 2]
    );
    assert!(out.is_file());
}
