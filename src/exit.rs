//! Exit codes: a documented contract scripts rely on (README, `cwleak check
//! --help`, docs/ci.md).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// No CLOSE_WAIT leak in scope (check: none beyond the thresholds).
    Clean,
    /// At least one persistent CLOSE_WAIT socket in scope (check: beyond the thresholds).
    Leaks,
    /// cwleak could not do its job (bad input, unreadable root, no scope,
    /// every process in scope gone, a report that could not be written, ...).
    Error,
    /// `check -- CMD`: CMD's own non-zero status, passed through unchanged
    /// (128+N when signal N killed it, as shells report it). It wins over the
    /// check's verdict: a failed test run is the first thing to fix, and the
    /// check's reports are still written.
    Command(i32),
    /// `check -- CMD`: CMD exists but could not be executed (as in POSIX shells).
    CannotExecute,
    /// `check -- CMD`: CMD was not found (as in POSIX shells).
    NotFound,
    /// `watch --fail-on-growth`: a process held more CLOSE_WAIT sockets at
    /// the end than at its first look (status 1, like a leak).
    Grew,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Clean => 0,
            Exit::Leaks => 1,
            Exit::Error => 2,
            Exit::Command(code) => code,
            Exit::CannotExecute => 126,
            Exit::NotFound => 127,
            Exit::Grew => 1,
        }
    }

    pub fn from_leaks(leaked: usize) -> Self {
        if leaked > 0 {
            Exit::Leaks
        } else {
            Exit::Clean
        }
    }

    /// A scan's status: leaks found are leaks (1) whatever was not seen; no
    /// leak found is clean (0) only when the look could support it (2 when
    /// `scan.incomplete` names what it could not see).
    pub fn of_report(report: &crate::diagnose::Report) -> Self {
        if report.summary.leaked == 0 && !report.scan.incomplete.is_empty() {
            Exit::Error
        } else {
            Exit::from_leaks(report.summary.leaked)
        }
    }

    /// The status a wrapped command ended with: its exit code, or 128+N when
    /// signal N killed it. None for success (the check then decides).
    pub fn from_command(code: Option<i32>, signal: Option<i32>) -> Option<Self> {
        match (code, signal) {
            (Some(0), _) => None,
            (Some(c), _) => Some(Exit::Command(c)),
            (None, Some(s)) => Some(Exit::Command(128 + s)),
            // Neither (cannot happen on Linux): still a failure, never a pass.
            (None, None) => Some(Exit::Command(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        assert_eq!(Exit::Clean.code(), 0);
        assert_eq!(Exit::Leaks.code(), 1);
        assert_eq!(Exit::Error.code(), 2);
        assert_eq!(Exit::CannotExecute.code(), 126);
        assert_eq!(Exit::NotFound.code(), 127);
        assert_eq!(Exit::Grew.code(), 1);
        assert_eq!(Exit::from_leaks(0), Exit::Clean);
        assert_eq!(Exit::from_leaks(3), Exit::Leaks);
    }

    #[test]
    fn a_wrapped_command_status_is_passed_through() {
        assert_eq!(Exit::from_command(Some(0), None), None);
        assert_eq!(Exit::from_command(Some(3), None).map(Exit::code), Some(3));
        assert_eq!(Exit::from_command(Some(1), None).map(Exit::code), Some(1));
        assert_eq!(
            Exit::from_command(None, Some(15)).map(Exit::code),
            Some(143)
        );
        assert_eq!(Exit::from_command(None, Some(2)).map(Exit::code), Some(130));
    }
}
