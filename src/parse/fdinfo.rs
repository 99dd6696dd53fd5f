//! /proc/PID/fdinfo/FD: only the `flags:` line matters to us.

use super::ParseResult;

const O_CLOEXEC: u32 = 0o2000000;

/// Whether the fd has close-on-exec set, from the octal `flags:` line.
pub fn cloexec(text: &str) -> ParseResult<bool> {
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .ok_or("no flags: line")?;
    let flags = u32::from_str_radix(flags.trim(), 8).map_err(|e| format!("flags: {e}"))?;
    Ok(flags & O_CLOEXEC != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cloexec_flag() {
        let with = "pos:\t0\nflags:\t02000002\nmnt_id:\t9\nino:\t123\n";
        let without = "pos:\t0\nflags:\t02\nmnt_id:\t9\n";
        assert_eq!(cloexec(with), Ok(true));
        assert_eq!(cloexec(without), Ok(false));
        assert!(cloexec("pos: 0\n").is_err());
        assert!(cloexec("flags:\tzz\n").is_err());
    }
}
