//! The sysctl configuration files of the host (/etc/sysctl.d/*.conf, then
//! /etc/sysctl.conf, as `sysctl --system` and systemd-sysctl apply them) set
//! beside the values running now, read from ROOT/sys. Both roots are values:
//! tests give a fixture directory for each.

use super::root::ProcRoot;
use super::SourceError;
use crate::model::Warning;
use crate::parse::sysctl_conf;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The line that sets a key last, and what runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfSetting {
    /// As `sysctl` names it.
    pub key: String,
    /// The value the file sets (whitespace-normalized).
    pub value: String,
    /// The file and 1-based line that set it last.
    pub file: String,
    pub line: usize,
    /// The line starts with `-`: a failure to apply it is ignored.
    pub optional: bool,
    /// The value running now (whitespace-normalized); None when this kernel
    /// (or the namespace cwleak runs in) has no such setting.
    pub running: Option<String>,
}

/// Every key the files set (the last setting of each wins), with its
/// running value. Globbed keys are left out: they name no one setting.
pub fn read(etc: &Path, root: &ProcRoot) -> (Vec<ConfSetting>, Vec<Warning>) {
    let mut files = Vec::new();
    if let Ok(dir) = std::fs::read_dir(etc.join("sysctl.d")) {
        let mut d: Vec<_> = dir
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        d.sort();
        files.extend(d);
    }
    files.push(etc.join("sysctl.conf"));
    let mut warnings = Vec::new();
    let mut last: BTreeMap<String, ConfSetting> = BTreeMap::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                warnings.push(SourceError::io(None, &f, e).to_warning());
                continue;
            }
        };
        let (lines, errors) = sysctl_conf::parse(&text);
        for e in errors.into_iter().take(5) {
            warnings.push(SourceError::malformed(None, &f, e).to_warning());
        }
        for l in lines {
            let Some(path) = sysctl_conf::proc_path(&l.key) else {
                continue;
            };
            let rel = Path::new("sys").join(&path);
            let running = match root.read_string(None, &rel) {
                Ok(v) => Some(v.split_whitespace().collect::<Vec<_>>().join(" ")),
                // There but not readable (write-only, like net.ipv4.route.flush):
                // nothing to compare.
                Err(_) if root.join(&rel).exists() => continue,
                Err(_) => None,
            };
            let key = sysctl_conf::dotted(&l.key);
            last.insert(
                key.clone(),
                ConfSetting {
                    key,
                    value: l.value,
                    file: f.display().to_string(),
                    line: l.number,
                    optional: l.optional,
                    running,
                },
            );
        }
    }
    (last.into_values().collect(), warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_setting_wins_and_running_values_come_from_the_root() {
        let etc = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(etc.path().join("sysctl.d")).unwrap();
        std::fs::write(
            etc.path().join("sysctl.d/10-net.conf"),
            "net.ipv4.tcp_fin_timeout = 15\nnet.ipv4.tcp_tw_recycle = 1\n",
        )
        .unwrap();
        std::fs::write(etc.path().join("sysctl.d/README"), "not = read\n").unwrap();
        std::fs::write(
            etc.path().join("sysctl.conf"),
            "net.ipv4.tcp_fin_timeout=30\n",
        )
        .unwrap();
        let sys = proc.path().join("sys/net/ipv4");
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::write(sys.join("tcp_fin_timeout"), "60\n").unwrap();
        let (set, warnings) = read(etc.path(), &ProcRoot::new(proc.path()));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(set.len(), 2);
        let fin = &set[0];
        assert_eq!(fin.key, "net.ipv4.tcp_fin_timeout");
        assert_eq!((fin.value.as_str(), fin.line), ("30", 1));
        assert!(fin.file.ends_with("sysctl.conf"));
        assert_eq!(fin.running.as_deref(), Some("60"));
        assert_eq!(set[1].running, None);
    }
}
