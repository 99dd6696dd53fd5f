//! Redrawing a frame in place on a terminal with plain ANSI: cursor home,
//! each line cleared to its end, the rest of the screen cleared after the
//! last line. No alternate screen, so the last frame and the summary stay
//! in the scrollback after Ctrl-C; no full clear first, so no flicker.

/// `frame` wrapped to overwrite the previous one.
pub fn in_place(frame: &str) -> String {
    let mut out = String::with_capacity(frame.len() + 256);
    out.push_str("\x1b[H");
    for line in frame.lines() {
        out.push_str(line);
        out.push_str("\x1b[K\n");
    }
    out.push_str("\x1b[J");
    out
}

#[cfg(test)]
mod tests {
    use super::in_place;

    #[test]
    fn frames_overwrite_in_place() {
        assert_eq!(in_place("a\nbc\n"), "\x1b[Ha\x1b[K\nbc\x1b[K\n\x1b[J");
    }
}
