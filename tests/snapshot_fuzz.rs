//! Fuzzing the snapshot reader with proptest over a corpus of real captures:
//! whatever the bytes, reading gives Ok or a one-line Err, and whatever it
//! accepts diagnoses and renders without panicking.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cwleak::diagnose::{diagnose, Scope};
use cwleak::report::{render, Format, RenderOptions};
use proptest::prelude::*;
use std::path::PathBuf;

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("tests/corpus/snapshots")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn corpus() -> Vec<Vec<u8>> {
    corpus_files()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Replace the n-th run of digits with another number (type-valid, value-wild).
    Number(usize, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (
            any::<usize>(),
            prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()]
        )
            .prop_map(|(i, n)| Mutation::Number(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let len = bytes.len().max(1);
    match m {
        Mutation::Truncate(i) => bytes.truncate(i % len),
        Mutation::Flip(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x ^= b | 1;
            }
        }
        Mutation::Insert(i, v) => {
            let at = i % len;
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let at = i % len;
            let end = (at + n).min(bytes.len());
            bytes.drain(at..end);
        }
        Mutation::Number(i, n) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let runs: Vec<(usize, usize)> = digit_runs(&text);
            if !runs.is_empty() {
                let (s, e) = runs[i % runs.len()];
                return format!("{}{}{}", &text[..s], n, &text[e..]).into_bytes();
            }
        }
    }
    bytes
}

fn digit_runs(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((s, i));
        } else {
            i += 1;
        }
    }
    runs
}

fn check(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.json");
    std::fs::write(&path, bytes).unwrap();
    match cwleak::snapshot::read(&path) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            assert!(
                msg.contains("fuzz.json"),
                "error does not name the file: {msg}"
            );
        }
        Ok(capture) => {
            for snap in &capture.samples {
                let report = diagnose(snap, &Scope::everything());
                for format in [Format::Text, Format::Json, Format::Markdown, Format::Dot] {
                    let mut out = Vec::new();
                    render(
                        &report,
                        format,
                        &RenderOptions {
                            color: true,
                            width: 80,
                            pretty: false,
                            ..RenderOptions::default()
                        },
                        &mut out,
                    )
                    .unwrap();
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_snapshots_never_panic(seed in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..4)) {
        let corpus = corpus();
        let mut bytes = corpus[seed % corpus.len()].clone();
        for m in &muts {
            bytes = apply(bytes, m);
        }
        check(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }
}

#[test]
fn the_corpus_itself_reads_and_diagnoses() {
    // Real captures: each must read (an Err here is a broken reader, not a
    // rejected input), hold at least one look, and that look its leak.
    let files = corpus_files();
    assert!(files.len() >= 5, "corpus: {files:?}");
    for path in files {
        let capture = cwleak::snapshot::read(&path)
            .unwrap_or_else(|e| panic!("{} does not read: {e}", path.display()));
        assert!(
            !capture.samples.is_empty(),
            "{}: no samples",
            path.display()
        );
        for snap in &capture.samples {
            assert!(
                !snap.processes.is_empty() && !snap.sockets.is_empty(),
                "{}: an empty look",
                path.display()
            );
            let report = diagnose(snap, &Scope::everything());
            assert!(
                !report.findings.is_empty(),
                "{}: a recorded leak diagnosed as none",
                path.display()
            );
        }
        check(&std::fs::read(&path).unwrap());
    }
}
