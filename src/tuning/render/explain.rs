//! Every setting explained, and the popular TIME_WAIT recipe walked line by
//! line, for the first namespace shown (the others' explanations are in the
//! JSON output).

use super::namespace_label;
use crate::report::style::Style;
use crate::report::wrap::{clean, wrap};
use crate::tuning::report::{NamespaceSettings, TuningReport};
use std::io::{self, Write};

pub(super) fn settings(
    r: &TuningReport,
    width: usize,
    st: Style,
    out: &mut dyn Write,
) -> io::Result<()> {
    let Some(n) = r.namespaces.iter().find(|n| !n.sysctls.is_empty()) else {
        return Ok(());
    };
    writeln!(out)?;
    let head = format!(
        "What each setting does, in netns {}:",
        namespace_label(r, n.netns)
    );
    for l in wrap(&head, width, "", "  ") {
        writeln!(out, "{}", st.bold(&l))?;
    }
    for e in &n.explained {
        writeln!(out)?;
        let value = e
            .value
            .as_deref()
            .map_or_else(|| "(not on this kernel or in this namespace)".into(), clean);
        writeln!(out, "  {} = {value}", e.setting)?;
        for (label, text) in [("does", &e.does), ("not", &e.does_not), ("here", &e.here)] {
            if text.is_empty() {
                continue;
            }
            let head = format!("    {label:<6}");
            for l in wrap(text, width, &head, "          ") {
                writeln!(out, "{l}")?;
            }
        }
    }
    recipe(n, width, st, out)?;
    if r.namespaces.len() > 1 {
        writeln!(out)?;
        for l in wrap(
            "The other namespaces' settings are explained the same way in --format json \
             (namespaces[].explained, namespaces[].recipe).",
            width,
            "",
            "",
        ) {
            writeln!(out, "{l}")?;
        }
    }
    Ok(())
}

fn recipe(n: &NamespaceSettings, width: usize, st: Style, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        st.bold("The popular TIME_WAIT recipe, line by line, on this kernel:")
    )?;
    for l in &n.recipe {
        writeln!(out)?;
        let here = l
            .value_here
            .as_deref()
            .map_or_else(|| "absent here".into(), |v| format!("here {}", clean(v)));
        writeln!(out, "  {}   ({here})", l.line)?;
        for w in wrap(&l.verdict, width, "    ", "    ") {
            writeln!(out, "{w}")?;
        }
    }
    Ok(())
}
