//! Word wrapping and cleaning of text read from the system.

use std::borrow::Cow;

/// Text from the system (names, paths, command lines) made safe to show:
/// every character `hostile` names replaced by '?', so a process name can
/// neither drive the terminal, break a line, nor reorder or hide what a
/// reader sees. Every renderer (text, markdown, JUnit, watch) goes through it.
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(hostile) {
        Cow::Owned(
            s.chars()
                .map(|c| if hostile(c) { '?' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// C0 and C1 controls (ESC, CR, LF, TAB, U+009B CSI included), bidirectional
/// overrides, embeddings, isolates and marks (a "txt.exe" shown as "exe.txt"),
/// zero-width and invisible characters (two names that look the same), and
/// the Unicode line and paragraph separators.
pub fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Display width, counted in chars (good enough for names and paths).
pub fn width_of(s: &str) -> usize {
    s.chars().count()
}

/// Words that read wrong alone at a line's start or end: a unit is kept with
/// the number before it ("0 B", not "0" / "B"), and ">=" with what follows.
const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/// The words of `text`, with each unit joined to its number and each ">="
/// or "<=" to the next word: the pieces `fill` never breaks.
fn pieces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut glue_next = false;
    for word in text.split_whitespace() {
        let to_previous = UNITS.contains(&word)
            && out
                .last()
                .is_some_and(|p| p.ends_with(|c: char| c.is_ascii_digit()));
        match out.last_mut() {
            Some(last) if glue_next || to_previous => {
                last.push(' ');
                last.push_str(word);
            }
            _ => out.push(word.to_string()),
        }
        glue_next = word == ">=" || word == "<=";
    }
    out
}

/// Greedy word wrap of one paragraph: the first line has `first_room`
/// columns, the others `rest_room`. A word longer than the room is put alone
/// on its own line, unbroken; so is a number with its unit. Always returns at
/// least one (maybe empty) line.
pub fn fill(text: &str, first_room: usize, rest_room: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_width = 0;
    for word in pieces(text) {
        let word = word.as_str();
        let room = if lines.is_empty() {
            first_room
        } else {
            rest_room
        };
        let w = width_of(word);
        if line_width > 0 && line_width + 1 + w > room {
            lines.push(std::mem::take(&mut line));
            line_width = 0;
        }
        if line_width > 0 {
            line.push(' ');
            line_width += 1;
        }
        line.push_str(word);
        line_width += w;
    }
    lines.push(line);
    lines
}

/// `fill` with plain prefixes: "  why:  " on the first line, `rest` after.
pub fn wrap(text: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
    let first_room = width.saturating_sub(width_of(first));
    let rest_room = width.saturating_sub(width_of(rest));
    fill(text, first_room, rest_room)
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let prefix = if i == 0 { first } else { rest };
            format!("{prefix}{l}").trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_width_keeping_long_tokens_whole() {
        let text = "the parent forked a child after accept() and never closed its copy of \
                    the connection /a/very/long/path/that/cannot/be/broken/anywhere/at/all/really/truly/long";
        let lines = wrap(text, 40, "  why:  ", "        ");
        for l in &lines {
            assert!(width_of(l) <= 40 || !l.trim().contains(' '), "{l:?}");
        }
        assert!(lines[0].starts_with("  why:  the parent"));
        assert!(lines[1].starts_with("        "));
        assert_eq!(
            lines.join(" ").split_whitespace().count(),
            text.split_whitespace().count() + 1
        );
    }

    #[test]
    fn a_number_keeps_its_unit_and_a_bound_its_value() {
        let text = "oldest >= 884ms, unread 0 B";
        for room in 1..=text.len() {
            let lines = fill(text, room, room);
            assert!(
                lines.iter().all(|l| l != "B" && !l.starts_with("B ")),
                "{room}: {lines:?}"
            );
            assert!(
                lines.iter().all(|l| !l.ends_with(">=")),
                "{room}: {lines:?}"
            );
            assert_eq!(lines.join(" "), text, "{room}");
        }
        // A bare "B" that is not a unit stays a word of its own.
        assert_eq!(fill("plan B here", 6, 6), vec!["plan B", "here"]);
        assert_eq!(fill("B 1", 1, 1), vec!["B", "1"]);
    }

    #[test]
    fn empty_and_zero_width_do_not_panic() {
        assert_eq!(wrap("", 80, "a: ", ""), vec!["a:".to_string()]);
        assert_eq!(fill("a b", 0, 0), vec!["a", "b"]);
    }

    #[test]
    fn cleans_control_characters() {
        assert_eq!(clean("py\x1b[2Jthon\n"), "py?[2Jthon?");
        assert!(matches!(clean("python3"), Cow::Borrowed(_)));
        assert_eq!(clean("a\rb\u{9b}31mc\u{85}d"), "a?b?31mc?d");
        // "exe.txt" that a bidi override would show as "txt.exe".
        assert_eq!(clean("\u{202E}txt.exe\u{202C}"), "?txt.exe?");
        assert_eq!(clean("a\u{2066}b\u{2069}c\u{202A}d"), "a?b?c?d");
        assert_eq!(clean("n\u{200B}g\u{200D}i\u{2060}n\u{FEFF}x"), "n?g?i?n?x");
        assert_eq!(
            clean("caf\u{e9} \u{4e2d}\u{6587}"),
            "caf\u{e9} \u{4e2d}\u{6587}"
        );
        assert_eq!(clean("\u{fffd}\u{fffd}name"), "\u{fffd}\u{fffd}name");
    }
}
