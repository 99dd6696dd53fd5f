//! The host's sysctl configuration files against the running system: keys
//! this kernel does not have (a stale recipe line such as tcp_tw_recycle),
//! and values the running system does not have (set by hand, by a container
//! runtime, or by a later file or tool).

use crate::source::sysctl_conf::ConfSetting;
use crate::tuning::finding::{text, Finding, Observation, Rule, Severity};

/// Lines named per finding; the rest are counted.
const SHOWN: usize = 12;

pub fn conf(set: &[ConfSetting]) -> Vec<Finding> {
    let missing: Vec<&ConfSetting> = set.iter().filter(|c| c.running.is_none()).collect();
    let differs: Vec<&ConfSetting> = set
        .iter()
        .filter(|c| c.running.as_ref().is_some_and(|r| *r != c.value))
        .collect();
    let place = |c: &ConfSetting| format!("{}:{}", c.file, c.line);
    let mut out = Vec::new();
    if !missing.is_empty() {
        let observed = observed(&missing, |c| {
            format!(
                "{} in {}{}",
                c.value,
                place(c),
                if c.optional { " (optional: '-')" } else { "" }
            )
        });
        let all_optional = missing.iter().all(|c| c.optional);
        out.push(Finding {
            rule: Rule::SysctlConf,
            severity: if all_optional {
                Severity::Info
            } else {
                Severity::Warn
            },
            netns: None,
            setting: (missing.len() == 1).then(|| missing[0].key.clone()),
            title: format!(
                "{} line{} of the sysctl configuration set{} what this kernel does not have ({})",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                if missing.len() == 1 { "s" } else { "" },
                first_keys(&missing)
            ),
            observed,
            reason: "There is no such file under /proc/sys in the namespace cwleak runs in: the \
                     setting was removed from the kernel (tcp_tw_recycle since Linux 4.12), \
                     belongs to a module not loaded, or is misspelled. Applying these files \
                     (`sysctl --system`, systemd-sysctl at boot) reports an error for each \
                     line not marked with '-', and the line does nothing."
                .into(),
            action: "Delete the lines, or prefix a key with '-' when it is meant for other \
                     kernels too."
                .into(),
        });
    }
    if !differs.is_empty() {
        let observed = observed(&differs, |c| {
            format!(
                "{} in {}, running {}",
                c.value,
                place(c),
                c.running.as_deref().unwrap_or("")
            )
        });
        out.push(Finding {
            rule: Rule::SysctlConf,
            severity: Severity::Info,
            netns: None,
            setting: (differs.len() == 1).then(|| differs[0].key.clone()),
            title: format!(
                "{} setting{} of the sysctl configuration not in effect ({})",
                differs.len(),
                if differs.len() == 1 { "" } else { "s" },
                first_keys(&differs)
            ),
            observed,
            reason: "The running value differs from what the files set last: something changed \
                     it since they were applied (by hand, a tuning daemon, a container \
                     runtime), or they were never applied. What runs is what counts; the next \
                     boot applies the files again. Values are compared in the namespace cwleak \
                     runs in."
                .into(),
            action: "Decide which value you want and make the files say it, or apply them \
                     (`sysctl --system`)."
                .into(),
        });
    }
    out
}

/// One observed line per setting (key, then `describe`), the first SHOWN of
/// them, and a count of the rest.
fn observed(lines: &[&ConfSetting], describe: impl Fn(&ConfSetting) -> String) -> Vec<Observation> {
    let mut out: Vec<_> = lines
        .iter()
        .take(SHOWN)
        .map(|c| text(&c.key, describe(c)))
        .collect();
    if lines.len() > SHOWN {
        out.push(text("and more", format!("{} lines", lines.len() - SHOWN)));
    }
    out
}

/// The first three keys, for a finding's title.
fn first_keys(lines: &[&ConfSetting]) -> String {
    lines
        .iter()
        .take(3)
        .map(|c| c.key.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: &str, value: &str, running: Option<&str>, optional: bool) -> ConfSetting {
        ConfSetting {
            key: key.into(),
            value: value.into(),
            file: "/etc/sysctl.conf".into(),
            line: 3,
            optional,
            running: running.map(String::from),
        }
    }

    #[test]
    fn missing_and_overridden_lines() {
        let set = [
            c("net.ipv4.tcp_tw_recycle", "1", None, false),
            c("net.ipv4.tcp_fin_timeout", "30", Some("60"), false),
            c("net.core.somaxconn", "4096", Some("4096"), false),
        ];
        let f = conf(&set);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].severity, Severity::Warn);
        assert_eq!(f[0].setting.as_deref(), Some("net.ipv4.tcp_tw_recycle"));
        assert!(f[0].title.contains("does not have"), "{}", f[0].title);
        assert_eq!(f[1].severity, Severity::Info);
        assert!(f[1].observed[0].value.to_string().contains("running 60"));
        let optional = conf(&[c("net.ipv4.tcp_tw_recycle", "1", None, true)]);
        assert_eq!(optional[0].severity, Severity::Info);
        assert!(conf(&set[2..]).is_empty());
    }

    /// A finding about one line names its setting (docs/json-schema.md:
    /// `setting` is the sysctl it is about), in the JSON field and in the
    /// title; one about several has no single setting, and its title names
    /// the keys.
    #[test]
    fn one_line_names_its_setting_several_have_none() {
        let one = conf(&[c("net.ipv4.tcp_fin_timeout", "30", Some("60"), false)]);
        assert_eq!(one[0].setting.as_deref(), Some("net.ipv4.tcp_fin_timeout"));
        assert!(
            one[0].title.contains("net.ipv4.tcp_fin_timeout"),
            "{}",
            one[0].title
        );
        let two = conf(&[
            c("net.ipv4.tcp_tw_recycle", "1", None, false),
            c("net.ipv4.tcp_bogus", "1", None, false),
            c("net.ipv4.tcp_fin_timeout", "30", Some("60"), false),
            c("net.core.somaxconn", "4096", Some("128"), false),
        ]);
        assert_eq!(two.len(), 2);
        for f in &two {
            assert_eq!(f.setting, None, "{}", f.title);
        }
        assert!(two[0]
            .title
            .contains("net.ipv4.tcp_tw_recycle, net.ipv4.tcp_bogus"));
        assert!(two[1]
            .title
            .contains("net.ipv4.tcp_fin_timeout, net.core.somaxconn"));
    }

    /// However many lines, none is lost: each is named in `observed` or
    /// counted in its "and more" line, which is there only when some line is
    /// not named.
    #[test]
    fn every_line_is_named_or_counted() {
        for n in [1, SHOWN - 1, SHOWN, SHOWN + 1, 3 * SHOWN] {
            let set: Vec<_> = (0..n)
                .map(|i| c(&format!("net.ipv4.k{i}"), "1", Some("2"), false))
                .collect();
            let f = &conf(&set)[0];
            let named = f.observed.iter().filter(|o| o.name != "and more").count();
            let more: Vec<_> = f
                .observed
                .iter()
                .filter(|o| o.name == "and more")
                .map(|o| o.value.to_string())
                .collect();
            assert_eq!(named, n.min(SHOWN), "{n} lines");
            if n > named {
                assert_eq!(more, vec![format!("{} lines", n - named)], "{n} lines");
            } else {
                assert!(more.is_empty(), "{n} lines: {more:?}");
            }
        }
    }
}
