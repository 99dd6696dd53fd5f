//! Record a /proc fixture tree from a live scenario, for the parsing and
//! diagnosis tests:
//!   `record_fixture --scenario NAME --out DIR` runs examples/scenario NAME,
//!   records it, writes its facts line to DIR/facts.json, and stops it;
//!   `record_fixture --pid PID [--port PORT]... --out DIR` records a running tree.
//!
//! Copies, for PID, its descendants and its ancestors (with --scenario, up to
//! this recorder; with --pid, up to pid 1): stat, status, cgroup, limits, the
//! exe and ns/net links, every fd link (as a dangling symlink to the same
//! target), fdinfo of socket fds, task/*/stat, and the TCP tables of each
//! namespace filtered to the rows those processes hold or the given ports use
//! (accept-queue rows have no inode). Nothing else of the host: file paths
//! behind fds become `/fixture/file`, and executables inside this checkout
//! are named from its root as `/cwleak/...`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

fn main() {
    if let Err(e) = run() {
        eprintln!("record_fixture: {e}");
        std::process::exit(2);
    }
}

struct Args {
    scenario: Option<String>,
    pid: Option<i32>,
    ports: Vec<u16>,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut pid = None;
    let mut scenario = None;
    let mut ports = Vec::new();
    let mut out = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--pid" => pid = Some(v.parse().map_err(|_| "bad --pid")?),
            "--scenario" => scenario = Some(v),
            "--port" => ports.push(v.parse().map_err(|_| "bad --port")?),
            "--out" => out = Some(PathBuf::from(v)),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if pid.is_none() == scenario.is_none() {
        return Err("give either --pid or --scenario".into());
    }
    Ok(Args {
        scenario,
        pid,
        ports,
        out: out.ok_or("--out is required")?,
    })
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    match (&args.scenario, args.pid) {
        (Some(name), _) => record_scenario(name, &args.out),
        (None, Some(pid)) => record(pid, None, &args.ports, &args.out),
        (None, None) => Err("give either --pid or --scenario".into()),
    }
}

/// Run the scenario driver beside this binary, record, then let it clean up.
fn record_scenario(name: &str, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()?;
    let driver = exe.with_file_name("scenario");
    let mut child = Command::new(&driver)
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", driver.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let facts: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("facts line {line:?}: {e}"))?;
    let pid = facts["driver"].as_i64().ok_or("no driver pid in facts")? as i32;
    let port = facts["port"].as_u64().map(|p| p as u16);
    // Ancestors up to this recorder: what runs above it is the recording
    // session, not the scenario.
    let me = i32::try_from(std::process::id())?;
    let result = record(pid, Some(me), &port.into_iter().collect::<Vec<_>>(), out);
    fs::create_dir_all(out)?;
    fs::write(
        out.join("facts.json"),
        serde_json::to_string_pretty(&facts)? + "\n",
    )?;
    drop(child.stdin.take());
    child.wait()?;
    result
}

/// Records `root_pid`, its descendants, and its ancestors up to `top` (or
/// pid 1).
fn record(
    root_pid: i32,
    top: Option<i32>,
    ports: &[u16],
    out: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let proc = Path::new("/proc");
    let parents = parent_map(proc)?;
    let mut pids: BTreeSet<i32> = descendants(&parents, root_pid);
    let mut cur = root_pid;
    while let Some(&pp) = parents.get(&cur) {
        if Some(cur) == top || pp <= 0 || !pids.insert(pp) {
            break;
        }
        cur = pp;
    }
    let root = out.join("proc");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    fs::create_dir_all(root.join("sys/kernel"))?;
    fs::write(root.join("sys/kernel/hostname"), "fixture\n")?;
    fs::copy(
        proc.join("sys/kernel/osrelease"),
        root.join("sys/kernel/osrelease"),
    )?;

    let mut inodes = HashSet::new();
    let mut ns_member: BTreeMap<String, String> = BTreeMap::new();
    for &pid in &pids {
        let socks = copy_process(proc, &root, pid)?;
        if !socks.is_empty() {
            let base = table_base(proc, pid);
            if let Ok(ns) = fs::read_link(proc.join(&base).join("ns/net")) {
                ns_member.entry(ns.display().to_string()).or_insert(base);
            }
        }
        inodes.extend(socks);
    }
    for base in ns_member.values() {
        for table in ["tcp", "tcp6"] {
            copy_table(proc, &root, base, table, &inodes, ports)?;
        }
    }
    eprintln!("recorded {} processes into {}", pids.len(), root.display());
    Ok(())
}

fn parent_map(proc: &Path) -> io::Result<BTreeMap<i32, i32>> {
    let mut map = BTreeMap::new();
    for e in fs::read_dir(proc)? {
        let Some(pid) = e?.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(stat) = fs::read_to_string(proc.join(format!("{pid}/stat"))) {
            if let Some(ppid) = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
            {
                map.insert(pid, ppid);
            }
        }
    }
    Ok(map)
}

fn descendants(parents: &BTreeMap<i32, i32>, root: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::from([root]);
    loop {
        let before = set.len();
        for (pid, ppid) in parents {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// Copy one process; returns the socket inodes it holds.
fn copy_process(proc: &Path, root: &Path, pid: i32) -> io::Result<Vec<u64>> {
    let src = proc.join(pid.to_string());
    let dst = root.join(pid.to_string());
    fs::create_dir_all(dst.join("ns"))?;
    for f in ["stat", "status", "cgroup", "limits"] {
        if let Ok(text) = fs::read(src.join(f)) {
            fs::write(dst.join(f), text)?;
        }
    }
    if let Ok(t) = fs::read_link(src.join("exe")) {
        symlink(neutral_exe(&t), dst.join("exe"))?;
    }
    if let Ok(t) = fs::read_link(src.join("ns/net")) {
        symlink(t, dst.join("ns/net"))?;
    }
    let mut socks = copy_fds(&src, &dst)?;
    if let Ok(tasks) = fs::read_dir(src.join("task")) {
        for t in tasks.flatten() {
            let name = t.file_name();
            let tdst = dst.join("task").join(&name);
            fs::create_dir_all(tdst.join("ns"))?;
            if let Ok(text) = fs::read(t.path().join("stat")) {
                fs::write(tdst.join("stat"), text)?;
            }
            if let Ok(tl) = fs::read_link(t.path().join("ns/net")) {
                symlink(tl, tdst.join("ns/net"))?;
            }
            // A zombie leader's fd table is only visible through a live thread.
            if name.to_str() != Some(&pid.to_string()) && leader_is_zombie(&src) {
                socks.extend(copy_fds(&t.path(), &tdst)?);
            }
        }
    }
    Ok(socks)
}

/// An executable inside this checkout, named from the checkout's root
/// (`/cwleak/target/debug/examples/scenario`): the same program keeps one
/// name, and no path of the recording machine is kept.
fn neutral_exe(target: &Path) -> PathBuf {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
    match target.strip_prefix(checkout) {
        Ok(rel) => Path::new("/cwleak").join(rel),
        Err(_) => target.to_path_buf(),
    }
}

fn leader_is_zombie(src: &Path) -> bool {
    fs::read_to_string(src.join("stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn copy_fds(src: &Path, dst: &Path) -> io::Result<Vec<u64>> {
    let mut socks = Vec::new();
    let Ok(dir) = fs::read_dir(src.join("fd")) else {
        return Ok(socks);
    };
    fs::create_dir_all(dst.join("fd"))?;
    fs::create_dir_all(dst.join("fdinfo"))?;
    for e in dir.flatten() {
        let Ok(target) = fs::read_link(e.path()) else {
            continue;
        };
        let name = e.file_name();
        let t = target.display().to_string();
        let is_socket = t.starts_with("socket:[");
        // Keep socket links exact; other targets only by kind (no host paths).
        let kept = if is_socket || t.contains(":[") {
            t.clone()
        } else {
            "/fixture/file".to_string()
        };
        symlink(&kept, dst.join("fd").join(&name))?;
        if is_socket {
            if let Ok(info) = fs::read(src.join("fdinfo").join(&name)) {
                fs::write(dst.join("fdinfo").join(&name), info)?;
            }
            if let Some(n) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
            {
                socks.push(n);
            }
        }
    }
    Ok(socks)
}

/// Where a process's view of its namespace can be read: a zombie leader has
/// none, its live threads do (the same choice the scanner makes).
fn table_base(proc: &Path, pid: i32) -> String {
    let src = proc.join(pid.to_string());
    if !leader_is_zombie(&src) {
        return pid.to_string();
    }
    let mut tids: Vec<i32> = fs::read_dir(src.join("task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|t| *t != pid)
        .collect();
    tids.sort_unstable();
    tids.into_iter()
        .find(|t| !leader_is_zombie(&src.join(format!("task/{t}"))))
        .map_or(pid.to_string(), |t| format!("{pid}/task/{t}"))
}

fn copy_table(
    proc: &Path,
    root: &Path,
    base: &str,
    table: &str,
    inodes: &HashSet<u64>,
    ports: &[u16],
) -> io::Result<()> {
    let Ok(text) = fs::read_to_string(proc.join(format!("{base}/net/{table}"))) else {
        return Ok(());
    };
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let inode = f.get(9).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let port = |i: usize| {
            f.get(i)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
        };
        let on_port = [port(1), port(2)]
            .iter()
            .flatten()
            .any(|p| ports.contains(p));
        if i == 0 || (inode != 0 && inodes.contains(&inode)) || on_port {
            out.push_str(line);
            out.push('\n');
        }
    }
    let dir = root.join(format!("{base}/net"));
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(table), out)
}
