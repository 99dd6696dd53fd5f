//! Record a /proc fixture tree from a live scenario, for the parsing and
//! diagnosis tests: `record_fixture --pid PID [--port PORT]... --out DIR`.
//!
//! Copies, for PID, its descendants and its ancestors: stat, status, cgroup,
//! limits, the exe and ns/net links, every fd link (as a dangling symlink to
//! the same target), fdinfo of socket fds, task/*/stat, and the TCP tables of
//! each namespace filtered to the rows those processes hold or the given
//! ports use (accept-queue rows have no inode). Nothing else of the host.

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
    pid: i32,
    ports: Vec<u16>,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut pid = None;
    let mut ports = Vec::new();
    let mut out = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--pid" => pid = Some(v.parse().map_err(|_| "bad --pid")?),
            "--port" => ports.push(v.parse().map_err(|_| "bad --port")?),
            "--out" => out = Some(PathBuf::from(v)),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(Args {
        pid: pid.ok_or("--pid is required")?,
        ports,
        out: out.ok_or("--out is required")?,
    })
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let proc = Path::new("/proc");
    let parents = parent_map(proc)?;
    let mut pids: BTreeSet<i32> = descendants(&parents, args.pid);
    let mut cur = args.pid;
    while let Some(&pp) = parents.get(&cur) {
        if pp <= 0 || !pids.insert(pp) {
            break;
        }
        cur = pp;
    }
    let root = args.out.join("proc");
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
    let mut ns_member: BTreeMap<String, i32> = BTreeMap::new();
    for &pid in &pids {
        let socks = copy_process(proc, &root, pid)?;
        if !socks.is_empty() {
            if let Ok(ns) = fs::read_link(proc.join(format!("{pid}/ns/net"))) {
                ns_member.entry(ns.display().to_string()).or_insert(pid);
            }
        }
        inodes.extend(socks);
    }
    for pid in ns_member.values() {
        for table in ["tcp", "tcp6"] {
            copy_table(proc, &root, *pid, table, &inodes, &args.ports)?;
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
    for l in ["exe", "ns/net"] {
        if let Ok(t) = fs::read_link(src.join(l)) {
            symlink(t, dst.join(l))?;
        }
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
            if name.to_str() != Some(&pid.to_string()) && fs::read_dir(src.join("fd")).is_err() {
                socks.extend(copy_fds(&t.path(), &tdst)?);
            }
        }
    }
    Ok(socks)
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

fn copy_table(
    proc: &Path,
    root: &Path,
    pid: i32,
    table: &str,
    inodes: &HashSet<u64>,
    ports: &[u16],
) -> io::Result<()> {
    let Ok(text) = fs::read_to_string(proc.join(format!("{pid}/net/{table}"))) else {
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
    let dir = root.join(format!("{pid}/net"));
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(table), out)
}
