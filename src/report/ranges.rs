//! Compress lists of fds into ranges: [3, 4, 5, 9] -> "3-5, 9".

/// Runs of consecutive numbers, from any order, duplicates dropped.
pub fn runs(values: &[i32]) -> Vec<(i32, i32)> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(i32, i32)> = Vec::new();
    for v in sorted {
        match out.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(v) => *end = v,
            _ => out.push((v, v)),
        }
    }
    out
}

/// "3-5, 9, 12-40"; past `max_runs` runs the rest is cut to ", ...".
pub fn format(values: &[i32], max_runs: usize) -> String {
    let all = runs(values);
    let mut parts: Vec<String> = all
        .iter()
        .take(max_runs.max(1))
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if all.len() > parts.len() {
        parts.push("...".to_string());
    }
    parts.join(", ")
}

/// "fd 4", "fds 7-5006", "fds 3, 5, ..." (distinct values counted).
pub fn fds_label(values: &[i32], max_runs: usize) -> String {
    let word = if distinct(values) == 1 { "fd" } else { "fds" };
    format!("{word} {}", format(values, max_runs))
}

pub fn distinct(values: &[i32]) -> usize {
    runs(values)
        .iter()
        .map(|&(a, b)| (i64::from(b) - i64::from(a) + 1) as usize)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_consecutive_fds() {
        assert_eq!(format(&[], 4), "");
        assert_eq!(format(&[7], 4), "7");
        assert_eq!(format(&[9, 3, 4, 5, 4], 4), "3-5, 9");
        let many: Vec<i32> = (7..=5006).collect();
        assert_eq!(format(&many, 4), "7-5006");
        assert_eq!(distinct(&many), 5000);
        assert_eq!(format(&[1, 3, 5, 7, 9, 11], 3), "1, 3, 5, ...");
        assert_eq!(
            format(&[-1, 0, 1, i32::MAX], 4),
            format!("-1-1, {}", i32::MAX)
        );
    }

    #[test]
    fn labels_singular_and_plural() {
        assert_eq!(fds_label(&[4], 4), "fd 4");
        assert_eq!(fds_label(&[4, 4], 4), "fd 4");
        assert_eq!(fds_label(&[4, 5], 4), "fds 4-5");
    }
}
