//! /proc/PID/cmdline: NUL-separated arguments. Command lines carry passwords
//! and tokens, and reports go into tickets, so values that look like secrets
//! are masked before anything keeps them.

const MASK: &str = "***";
const SECRET_WORDS: [&str; 9] = [
    "pass", "pwd", "secret", "token", "key", "auth", "cred", "session", "cookie",
];

/// Arguments joined with spaces, secrets masked.
pub fn masked(raw: &[u8]) -> String {
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut out = Vec::with_capacity(args.len());
    let mut mask_next = false;
    for arg in args {
        if mask_next {
            out.push(MASK.to_string());
            mask_next = false;
            continue;
        }
        let (arg, next) = mask_arg(&arg);
        mask_next = next;
        out.push(arg);
    }
    out.join(" ")
}

/// Mask one argument; the bool says the next argument is this one's value.
fn mask_arg(arg: &str) -> (String, bool) {
    let arg = mask_url_password(arg);
    if let Some((name, value)) = arg.split_once('=') {
        if is_secret_name(name) && !value.is_empty() {
            return (format!("{name}={MASK}"), false);
        }
        return (arg, false);
    }
    // `--password hunter2`, `-p hunter2` style: the value is the next word.
    let flag = arg.starts_with('-') && arg.len() > 1;
    (arg.clone(), flag && is_secret_name(&arg))
}

fn is_secret_name(name: &str) -> bool {
    let n = name.trim_start_matches('-').to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| n.contains(w))
}

/// `scheme://user:password@host` -> `scheme://user:***@host`, anywhere in the arg.
fn mask_url_password(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ' ', '?', '#']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(args: &[&str]) -> String {
        masked(args.join("\0").as_bytes())
    }

    #[test]
    fn keeps_ordinary_arguments() {
        assert_eq!(m(&["nginx", "-g", "daemon off;"]), "nginx -g daemon off;");
        assert_eq!(
            m(&["python3", "server.py", "--port=8080"]),
            "python3 server.py --port=8080"
        );
    }

    #[test]
    fn masks_secret_flags_and_values() {
        assert_eq!(m(&["app", "--password=hunter2"]), "app --password=***");
        assert_eq!(
            m(&["app", "--api-key", "abc123", "--port", "80"]),
            "app --api-key *** --port 80"
        );
        assert_eq!(
            m(&["env", "DB_PASSWORD=x", "AUTH_TOKEN=y"]),
            "env DB_PASSWORD=*** AUTH_TOKEN=***"
        );
    }

    #[test]
    fn masks_url_credentials() {
        assert_eq!(
            m(&["worker", "--db", "postgres://app:s3cret@db:5432/x"]),
            "worker --db postgres://app:***@db:5432/x"
        );
        assert_eq!(
            m(&["curl", "https://example.org/a:b@c"]),
            "curl https://example.org/a:b@c"
        );
        assert_eq!(m(&["redis://:pw@host"]), "redis://:***@host");
    }
}
