//! The `watch` table for a terminal: one row per process holding CLOSE_WAIT
//! sockets, growing ones on top, cut to the terminal's width. Pure.

use super::track::Row;
use crate::report::style::Style;
use crate::report::units::duration_ms;
use std::fmt::Write;

/// What the header line says about the watch so far.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub interval_ms: u64,
    pub elapsed_ms: u64,
    pub looks: usize,
    /// Time of the last look's read of /proc and the TCP tables.
    pub read_ms: u64,
    pub walked: usize,
    pub processes: usize,
    pub scope: String,
}

/// Column names, aligned as `row` aligns the values.
fn columns() -> String {
    format!(
        "{:>7} {:<15} {:>7} {:>7} {:>7} {:>7}  {:<21} {}",
        "PID", "COMM", "NOW", "CHANGE", "/MIN", "OLDEST", "CAUSE", "CGROUP"
    )
}

/// The terminal the frame is drawn on.
#[derive(Debug, Clone, Copy)]
pub struct Screen {
    pub color: bool,
    pub width: usize,
    /// Rows: a frame taller than the screen would scroll and break the redraw.
    pub height: usize,
}

/// The whole frame: header, column names, rows (or a line saying there are
/// none), as many as the screen holds.
pub fn render(h: &Header, rows: &[Row], screen: Screen) -> String {
    let Screen {
        color,
        width,
        height,
    } = screen;
    let st = Style::new(color);
    let mut out = String::new();
    let total: usize = rows.iter().map(|r| r.count).sum();
    let _ = writeln!(
        out,
        "{}",
        fit(
            &format!(
                "cwleak watch: {} CLOSE_WAIT in {} process(es); every {} for {} ({} looks); read {} ms, {}/{} walked{}",
                total,
                rows.len(),
                duration_ms(h.interval_ms),
                duration_ms(h.elapsed_ms),
                h.looks,
                h.read_ms,
                h.walked,
                h.processes,
                if h.scope.is_empty() { String::new() } else { format!("; {}", h.scope) },
            ),
            width
        )
    );
    let _ = writeln!(out, "{}", st.bold(&fit(&columns(), width)));
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            st.green(&fit(
                "  no process holds a persistent CLOSE_WAIT socket",
                width
            ))
        );
    }
    // Header, column names, the footer, and the line the cursor rests on.
    let room = height.saturating_sub(4).max(1);
    let (shown, hidden) = if rows.len() > room {
        rows.split_at(room - 1)
    } else {
        (rows, &[][..])
    };
    for r in shown {
        let line = fit(&row(r), width);
        let line = if r.change() > 0 { st.red(&line) } else { line };
        let _ = writeln!(out, "{line}");
    }
    if !hidden.is_empty() {
        let more = format!(
            "  ... {} more process(es) holding {} socket(s): a taller terminal, or --pid/--port",
            hidden.len(),
            hidden.iter().map(|r| r.count).sum::<usize>()
        );
        let _ = writeln!(out, "{}", fit(&more, width));
    }
    let _ = writeln!(
        out,
        "{}",
        st.dim(&fit("Ctrl-C stops and prints a summary", width))
    );
    out
}

/// One row, uncut.
pub fn row(r: &Row) -> String {
    let pid = r.key.pid.map_or("-".to_string(), |p| p.to_string());
    let comm = if r.key.pid.is_none() {
        "(no holder)"
    } else {
        r.comm.as_str()
    };
    format!(
        "{pid:>7} {:<15} {:>7} {:>7} {:>7} {:>7}  {:<21} {}",
        clip(&printable(comm), 15),
        r.count,
        signed(r.change()),
        r.per_min.map_or("-".to_string(), |m| format!("{m:.1}")),
        r.oldest_ms.map_or("-".to_string(), duration_ms),
        causes(r),
        r.cgroup.as_deref().map_or("-".to_string(), short_cgroup),
    )
}

/// "+4", "-1", "0".
pub fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// "fork-parent-kept", or "fork-parent-kept+1" when a process has several causes.
pub fn causes(r: &Row) -> String {
    match r.causes.split_first() {
        None => "-".to_string(),
        Some((c, [])) => c.name().to_string(),
        Some((c, rest)) => format!("{}+{}", c.name(), rest.len()),
    }
}

/// The last component of a cgroup path, container ids cut to 12 characters:
/// "/kubepods.slice/.../cri-containerd-<64 hex>.scope" -> "cri-containerd-0123456789ab.scope".
pub fn short_cgroup(path: &str) -> String {
    let Some(last) = path.rsplit('/').find(|s| !s.is_empty()) else {
        return "/".to_string();
    };
    let mut out = String::with_capacity(last.len());
    let mut run = String::new();
    for c in last.chars().chain(std::iter::once('/')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() >= 32 {
            out.push_str(&run[..12]);
        } else {
            out.push_str(&run);
        }
        run.clear();
        if c != '/' {
            out.push(c);
        }
    }
    out
}

/// Process names are chosen by the process: no control characters on our screen.
pub fn printable(s: &str) -> String {
    crate::report::wrap::clean(s).into_owned()
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Cut to the terminal width: a wrapped row would break the redraw.
fn fit(s: &str, width: usize) -> String {
    clip(s, width.max(20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;
    use crate::watch::track::ProcKey;

    fn r(pid: Option<i32>, first: usize, count: usize) -> Row {
        Row {
            key: ProcKey { pid, start_time: 1 },
            comm: "leakyd".into(),
            cgroup: Some("/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope".into()),
            count,
            first,
            peak: count,
            step: 0,
            per_min: Some(12.5),
            oldest_ms: Some(75_000),
            causes: vec![Cause::ForkParentKept],
            made: None,
        }
    }

    #[test]
    fn rows_show_growth_rate_age_cause_and_a_short_cgroup() {
        assert_eq!(
            row(&r(Some(4242), 3, 15)),
            "   4242 leakyd               15     +12    12.5   1m15s  fork-parent-kept      docker-0123456789ab.scope"
        );
        let mut unheld = r(None, 2, 2);
        unheld.cgroup = None;
        unheld.per_min = None;
        unheld.causes = vec![Cause::NoVisibleHolder, Cause::NeverClosed];
        assert_eq!(
            row(&unheld),
            "      - (no holder)           2       0       -   1m15s  no-visible-holder+1   -"
        );
    }

    #[test]
    fn frames_fit_the_width_and_say_when_nothing_is_held() {
        let screen = |color, width, height| Screen {
            color,
            width,
            height,
        };
        let h = Header {
            interval_ms: 2000,
            elapsed_ms: 64_000,
            looks: 33,
            read_ms: 6,
            walked: 3,
            processes: 412,
            scope: String::new(),
        };
        let frame = render(&h, &[r(Some(1), 0, 4)], screen(false, 60, 24));
        assert!(frame.lines().all(|l| l.chars().count() <= 60), "{frame}");
        let wide = render(&h, &[r(Some(1), 0, 4)], screen(false, 200, 24));
        assert!(
            wide.starts_with("cwleak watch: 4 CLOSE_WAIT in 1 process(es); every 2s for 1m04s (33 looks); read 6 ms, 3/412 walked\n"),
            "{wide}"
        );
        let empty = render(&h, &[], screen(false, 100, 24));
        assert!(empty.contains("no process holds a persistent CLOSE_WAIT socket"));
        let coloured = render(&h, &[r(Some(1), 0, 4)], screen(true, 200, 24));
        assert!(coloured.contains("\x1b[1;31m"), "growth is red");
        let many: Vec<Row> = (1..=30).map(|p| r(Some(p), 0, 2)).collect();
        let short = render(&h, &many, screen(false, 120, 10));
        assert_eq!(short.lines().count(), 9, "{short}");
        assert!(
            short.contains("... 25 more process(es) holding 50 socket(s)"),
            "{short}"
        );
    }

    #[test]
    fn cgroups_are_cut_to_their_last_component() {
        assert_eq!(short_cgroup("/system.slice/nginx.service"), "nginx.service");
        assert_eq!(short_cgroup("/"), "/");
        assert_eq!(
            short_cgroup("/kubepods.slice/cri-containerd-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.scope"),
            "cri-containerd-aaaaaaaaaaaa.scope"
        );
        assert_eq!(printable("a\x1b[2Jb"), "a?[2Jb");
    }
}
