//! sysctl.conf(5) and sysctl.d(5) text: `key = value` lines, `#` and `;`
//! comments, a leading `-` on the key to ignore a failure to apply it.

/// One setting line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based.
    pub number: usize,
    /// As written (dots or slashes), without the leading `-`.
    pub key: String,
    /// Whitespace-normalized.
    pub value: String,
    /// `-key = value`: a failure to apply it is ignored by the tools.
    pub optional: bool,
}

/// The setting lines of one file; lines that are neither settings nor
/// comments are returned as errors ("line N: ...") beside them.
pub fn parse(text: &str) -> (Vec<Line>, Vec<String>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        let Some((key, value)) = l.split_once('=') else {
            errors.push(format!("line {}: no '='", i + 1));
            continue;
        };
        let key = key.trim();
        let (optional, key) = match key.strip_prefix('-') {
            Some(k) => (true, k.trim()),
            None => (false, key),
        };
        if key.is_empty() {
            errors.push(format!("line {}: no key", i + 1));
            continue;
        }
        lines.push(Line {
            number: i + 1,
            key: key.to_string(),
            value: value.split_whitespace().collect::<Vec<_>>().join(" "),
            optional,
        });
    }
    (lines, errors)
}

/// The path under /proc/sys for a key: dots are separators unless the key
/// uses slashes (then dots stay, as in interface names like `eth0.100`).
/// None for a glob (`net.ipv4.conf.*.rp_filter`), which names no one file.
pub fn proc_path(key: &str) -> Option<String> {
    if key.contains('*') || key.contains('?') || key.contains("..") {
        return None;
    }
    let path = if key.contains('/') {
        key.trim_start_matches('/').to_string()
    } else {
        key.replace('.', "/")
    };
    (!path.is_empty()).then_some(path)
}

/// The key as `sysctl` prints it (dots).
pub fn dotted(key: &str) -> String {
    if key.contains('/') {
        key.trim_start_matches('/').replace('/', ".")
    } else {
        key.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_comments_and_optional_keys() {
        let text = "# tuned\n; old\nnet.ipv4.tcp_tw_reuse = 1\n-net.ipv4.tcp_tw_recycle=1\n\
                    net/ipv4/ip_local_port_range =  1024\t65000 \nbroken line\n";
        let (lines, errors) = parse(text);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].key, "net.ipv4.tcp_tw_reuse");
        assert_eq!((lines[0].number, lines[0].optional), (3, false));
        assert!(lines[1].optional);
        assert_eq!(lines[2].value, "1024 65000");
        assert_eq!(errors, vec!["line 6: no '='".to_string()]);
    }

    #[test]
    fn keys_map_to_proc_paths() {
        assert_eq!(
            proc_path("net.ipv4.tcp_fin_timeout").as_deref(),
            Some("net/ipv4/tcp_fin_timeout")
        );
        assert_eq!(
            proc_path("net/ipv4/conf/eth0.100/rp_filter").as_deref(),
            Some("net/ipv4/conf/eth0.100/rp_filter")
        );
        assert_eq!(proc_path("net.ipv4.conf.*.rp_filter"), None);
        assert_eq!(proc_path("../../etc/passwd"), None);
        assert_eq!(dotted("net/ipv4/tcp_mem"), "net.ipv4.tcp_mem");
    }
}
