//! Diagnostics on stderr. A failed write there (`2>/dev/full`, a reader that
//! went away) is ignored: it must never turn a documented exit status into a
//! panic (`eprintln!` panics on a write error), nor into anything else.

/// `eprintln!` that ignores a write error.
#[macro_export]
macro_rules! diag {
    () => {{
        use ::std::io::Write as _;
        let _ = ::std::io::stderr().write_all(b"\n");
    }};
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that ignores a write error.
#[macro_export]
macro_rules! diag_part {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut err = ::std::io::stderr();
        let _ = ::std::write!(err, $($arg)*);
        let _ = err.flush();
    }};
}
