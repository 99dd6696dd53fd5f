//! Exit codes: a documented contract scripts rely on.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// No CLOSE_WAIT leak in scope.
    Clean = 0,
    /// At least one persistent CLOSE_WAIT socket in scope.
    Leaks = 1,
    /// cwleak could not do its job (bad input, unreadable root, ...).
    Error = 2,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_leaks(leaked: usize) -> Self {
        if leaked > 0 {
            Exit::Leaks
        } else {
            Exit::Clean
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
        assert_eq!(Exit::from_leaks(0), Exit::Clean);
        assert_eq!(Exit::from_leaks(3), Exit::Leaks);
    }
}
