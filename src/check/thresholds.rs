//! Thresholds and allow rules against a report: which leaks are accepted
//! (still listed, marked `allowed`), which count, and whether the check
//! passes. Pure: the report in, the verdict out.

use super::outcome::{AllowRule, BlamedProcess};
use crate::diagnose::{Cause, Finding, Report};
use crate::model::Pid;

/// An accepted kind of leak: a cause, a port (local or remote), or both.
#[derive(Debug, Clone, PartialEq)]
pub struct AllowSpec {
    pub cause: Option<Cause>,
    pub port: Option<u16>,
    pub reason: Option<String>,
    /// "command line", or the config file's path.
    pub source: String,
}

impl AllowSpec {
    pub fn matches(&self, f: &Finding) -> bool {
        self.cause.is_none_or(|c| c == f.cause)
            && self
                .port
                .is_none_or(|p| f.socket.local.port() == p || f.socket.remote.port() == p)
    }

    /// "cause never-closed on port 6379 (cwleak.toml: the pool is lazy)".
    pub fn describe(&self) -> String {
        let what = match (self.cause, self.port) {
            (Some(c), Some(p)) => format!("cause {} on port {p}", c.name()),
            (Some(c), None) => format!("cause {}", c.name()),
            (None, Some(p)) => format!("port {p}"),
            (None, None) => "everything".to_string(),
        };
        match &self.reason {
            Some(r) => format!("{what} ({}: {r})", self.source),
            None => format!("{what} ({})", self.source),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub max: usize,
    pub max_per_process: Option<usize>,
    pub allow: Vec<AllowSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub failures: Vec<String>,
    pub counted: usize,
    pub allowed: usize,
    pub blamed: Vec<BlamedProcess>,
    pub rules: Vec<AllowRule>,
}

/// Mark allowed findings in `report` and judge the rest against `t`.
pub fn apply(report: &mut Report, t: &Thresholds) -> Verdict {
    let mut matched = vec![0usize; t.allow.len()];
    for f in &mut report.findings {
        f.allowed = t.allow.iter().position(|a| a.matches(f)).map(|i| {
            matched[i] += 1;
            t.allow[i].describe().into()
        });
    }
    let mut blamed = blamed_processes(report);
    let counted: usize = blamed.iter().map(|b| b.counted).sum();
    let allowed: usize = blamed.iter().map(|b| b.allowed).sum();
    let over_total = counted > t.max;
    let mut failures = Vec::new();
    if over_total {
        failures.push(format!(
            "{counted} persistent CLOSE_WAIT {} in scope, more than the {} allowed (--max)",
            plural(counted, "socket", "sockets"),
            t.max
        ));
    }
    for b in &mut blamed {
        let over_own = t.max_per_process.is_some_and(|m| b.counted > m);
        if over_own {
            failures.push(format!(
                "{}: {} persistent CLOSE_WAIT {}, more than the {} allowed per process (--max-per-process)",
                who(b.pid, b.comm.as_deref()),
                b.counted,
                plural(b.counted, "socket", "sockets"),
                t.max_per_process.unwrap_or(0)
            ));
        }
        b.failed = b.counted > 0 && (over_total || over_own);
    }
    Verdict {
        passed: failures.is_empty(),
        failures,
        counted,
        allowed,
        blamed,
        rules: t
            .allow
            .iter()
            .zip(matched)
            .map(|(a, matched)| AllowRule {
                cause: a.cause,
                port: a.port,
                reason: a.reason.clone(),
                source: a.source.clone(),
                matched,
            })
            .collect(),
    }
}

/// One entry per blamed process, in the order of the report's groups (most
/// sockets first); the sockets nobody visibly holds are one more entry.
fn blamed_processes(report: &Report) -> Vec<BlamedProcess> {
    let mut out: Vec<BlamedProcess> = Vec::new();
    for g in &report.groups {
        let idx = match out.iter().position(|b| b.pid == g.pid) {
            Some(i) => i,
            None => {
                out.push(BlamedProcess {
                    pid: g.pid,
                    comm: g.comm.clone(),
                    causes: Vec::new(),
                    counted: 0,
                    allowed: 0,
                    failed: false,
                });
                out.len() - 1
            }
        };
        let b = &mut out[idx];
        if !b.causes.contains(&g.cause) {
            b.causes.push(g.cause);
        }
        for f in g.findings.iter().filter_map(|&i| report.findings.get(i)) {
            if f.allowed.is_some() {
                b.allowed += 1;
            } else {
                b.counted += 1;
            }
        }
    }
    out
}

/// "pid 42 leakyd", or "no visible holder".
pub fn who(pid: Option<Pid>, comm: Option<&str>) -> String {
    match (pid, comm) {
        (Some(pid), Some(comm)) => format!("pid {pid} {comm}"),
        (Some(pid), None) => format!("pid {pid}"),
        (None, _) => "no visible holder".to_string(),
    }
}

pub fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::{sock, Builder};

    /// pid 10: 3 fork-parent-kept on port 8080; pid 20: 1 never-closed to
    /// port 5432; 1 socket with no visible holder.
    fn report() -> Report {
        let mut b = Builder::new();
        let fork: Vec<_> = (0..3)
            .map(|i| {
                sock(
                    "10.0.0.1:8080",
                    &format!("10.0.0.9:{}", 4000 + i),
                    vec![],
                    &[(10, 4 + i)],
                )
            })
            .collect();
        b.group(
            Some(10),
            Some("leakyd"),
            Cause::ForkParentKept,
            &[],
            "f",
            "m",
            fork,
        );
        let pool = vec![sock("10.0.0.1:40000", "10.0.0.7:5432", vec![], &[(20, 9)])];
        b.group(
            Some(20),
            Some("api"),
            Cause::NeverClosed,
            &[],
            "f",
            "m",
            pool,
        );
        let unheld = vec![sock("10.0.0.1:8080", "10.0.0.9:5000", vec![], &[])];
        b.group(None, None, Cause::NoVisibleHolder, &[], "f", "m", unheld);
        b.build()
    }

    fn rule(cause: Option<Cause>, port: Option<u16>) -> AllowSpec {
        AllowSpec {
            cause,
            port,
            reason: None,
            source: "command line".into(),
        }
    }

    #[test]
    fn default_thresholds_fail_on_any_leak() {
        let mut r = report();
        let v = apply(&mut r, &Thresholds::default());
        assert!(!v.passed);
        assert_eq!((v.counted, v.allowed), (5, 0));
        assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
        assert!(v.failures[0]
            .starts_with("5 persistent CLOSE_WAIT sockets in scope, more than the 0 allowed"));
        let pids: Vec<_> = v
            .blamed
            .iter()
            .map(|b| (b.pid, b.counted, b.failed))
            .collect();
        assert_eq!(
            pids,
            vec![(Some(10), 3, true), (Some(20), 1, true), (None, 1, true)]
        );
        assert!(r.findings.iter().all(|f| f.allowed.is_none()));
    }

    #[test]
    fn max_counts_only_what_is_not_allowed() {
        let mut r = report();
        let t = Thresholds {
            max: 2,
            allow: vec![rule(Some(Cause::ForkParentKept), None)],
            ..Thresholds::default()
        };
        let v = apply(&mut r, &t);
        assert!(v.passed, "{:?}", v.failures);
        assert_eq!((v.counted, v.allowed), (2, 3));
        assert_eq!(v.rules[0].matched, 3);
        let allowed: Vec<_> = r
            .findings
            .iter()
            .filter_map(|f| f.allowed.as_deref())
            .collect();
        assert_eq!(allowed, vec!["cause fork-parent-kept (command line)"; 3]);
        assert!(v.blamed.iter().all(|b| !b.failed));
    }

    #[test]
    fn ports_match_either_end_and_rules_can_combine_cause_and_port() {
        let mut r = report();
        let t = Thresholds {
            max: 4,
            allow: vec![
                rule(None, Some(5432)),
                rule(Some(Cause::NoVisibleHolder), Some(9999)),
            ],
            ..Thresholds::default()
        };
        let v = apply(&mut r, &t);
        assert_eq!(
            v.rules.iter().map(|r| r.matched).collect::<Vec<_>>(),
            vec![1, 0]
        );
        assert!(v.passed, "4 counted, max 4: {:?}", v.failures);
        let api = v.blamed.iter().find(|b| b.pid == Some(20)).unwrap();
        assert_eq!((api.counted, api.allowed, api.failed), (0, 1, false));
    }

    #[test]
    fn max_per_process_names_the_process() {
        let mut r = report();
        let t = Thresholds {
            max: 100,
            max_per_process: Some(2),
            allow: vec![],
        };
        let v = apply(&mut r, &t);
        assert!(!v.passed);
        assert_eq!(
            v.failures,
            vec!["pid 10 leakyd: 3 persistent CLOSE_WAIT sockets, more than the 2 allowed per process (--max-per-process)"]
        );
        let failed: Vec<_> = v
            .blamed
            .iter()
            .filter(|b| b.failed)
            .map(|b| b.pid)
            .collect();
        assert_eq!(failed, vec![Some(10)]);
    }

    /// docs/ci.md: `--max-per-process N` is what is *tolerated* per
    /// process, so a process with exactly N sockets does not fail.
    #[test]
    fn max_per_process_tolerates_exactly_n() {
        let mut r = report();
        let t = Thresholds {
            max: 100,
            max_per_process: Some(3),
            allow: vec![],
        };
        let v = apply(&mut r, &t);
        assert!(v.passed, "pid 10 has 3, 3 tolerated: {:?}", v.failures);
        assert!(v.blamed.iter().all(|b| !b.failed));
    }

    /// docs/json-schema.md: a blamed process is `failed` when its sockets
    /// are part of why the check failed; one whose every socket is allowed
    /// is not, even when the others fail `--max`. Its causes are listed.
    #[test]
    fn a_process_whose_leaks_are_all_allowed_does_not_fail() {
        let mut r = report();
        let t = Thresholds {
            max: 0,
            allow: vec![rule(None, Some(5432))],
            ..Thresholds::default()
        };
        let v = apply(&mut r, &t);
        assert!(!v.passed);
        let blamed: Vec<_> = v
            .blamed
            .iter()
            .map(|b| (b.pid, b.counted, b.allowed, b.failed, b.causes.clone()))
            .collect();
        assert_eq!(
            blamed,
            vec![
                (Some(10), 3, 0, true, vec![Cause::ForkParentKept]),
                (Some(20), 0, 1, false, vec![Cause::NeverClosed]),
                (None, 1, 0, true, vec![Cause::NoVisibleHolder]),
            ]
        );
    }

    #[test]
    fn a_clean_report_passes_with_nobody_blamed() {
        let mut r = crate::report::testdata::clean();
        let v = apply(&mut r, &Thresholds::default());
        assert!(v.passed && v.failures.is_empty() && v.blamed.is_empty());
    }

    #[test]
    fn descriptions_say_what_where_and_why() {
        let mut a = rule(Some(Cause::NeverClosed), Some(6379));
        a.reason = Some("lazy pool".into());
        a.source = "/repo/cwleak.toml".into();
        assert_eq!(
            a.describe(),
            "cause never-closed on port 6379 (/repo/cwleak.toml: lazy pool)"
        );
        assert_eq!(rule(None, Some(1)).describe(), "port 1 (command line)");
    }
}
