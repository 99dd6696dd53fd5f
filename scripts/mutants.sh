#!/usr/bin/env bash
# Mutation testing of the rule-bearing modules with cargo-mutants: each
# mutant (a rule flipped, a branch deleted, a return value replaced) must make
# a test fail, or be listed in .cargo/mutants.toml as equivalent, with why.
#
#   scripts/mutants.sh                  # every rule-bearing file, one at a time
#   scripts/mutants.sh src/diagnose/classify.rs ...   # these files only
#   MUTANTS_IN_DIFF=change.diff scripts/mutants.sh    # only code a diff touches
#
# Needs `cargo install --locked cargo-mutants` and root (the live tests).
# One file at a time, one job (-j 1): each mutant rebuilds the crate and runs
# the tests that exercise that file, so a file costs minutes. Results go to
# target/mutants/<file>/mutants.out; a summary line per file goes to stdout.
# Exit status: 0 when no mutant was missed or timed out, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

command -v cargo-mutants >/dev/null || {
  echo "cargo-mutants is not installed: cargo install --locked cargo-mutants" >&2
  exit 2
}

# The rule-bearing modules: what decides a cause, a blame, a holder, a
# threshold, a sysctl verdict, or what a saved snapshot means.
default_files=(
  src/diagnose/*.rs
  src/graph.rs
  src/growth.rs
  src/source/recheck.rs
  src/source/prune.rs
  src/snapshot/*.rs
  src/check/thresholds.rs
  src/tuning/rules/*.rs
)
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("${default_files[@]}")

# The live tests run the scenario driver; it does not link the library, so
# one build of it serves every mutant.
cargo build --locked --quiet --examples || exit 2
export CWLEAK_SCENARIO_BIN="$PWD/target/debug/examples/scenario"

# The test targets that exercise a file: only they are built and run for
# each of its mutants (building all 17 test binaries per mutant would triple
# the time without catching more).
tests_for() {
  local t
  case "$1" in
    src/source/recheck.rs) t="lib scan_live" ;;
    src/diagnose/classify.rs) t="lib fixtures scan_live" ;;
    src/source/prune.rs) t="lib scan_live fd_tables" ;;
    src/snapshot/*) t="lib capture snapshot_fuzz" ;;
    src/check/*) t="lib check" ;;
    src/tuning/*) t="lib states_cli states_live" ;;
    src/growth.rs) t="lib check watch" ;;
    *) t="lib fixtures snapshots scan_live scan_patterns unseen_holders" ;;
  esac
  for x in $t; do
    if [ "$x" = lib ]; then echo --cargo-arg=--lib; else echo "--cargo-arg=--test=$x"; fi
  done
}

# One target directory kept between runs: cargo-mutants builds a copy of
# the tree, and with its own target/ every run would rebuild every
# dependency first.
export CARGO_TARGET_DIR="$PWD/target/mutants-build"

status=0
for f in "${files[@]}"; do
  out="target/mutants/${f//\//_}"
  mkdir -p "$out"
  diff_args=()
  [ -n "${MUTANTS_IN_DIFF:-}" ] && diff_args=(--in-diff "$MUTANTS_IN_DIFF")
  start=$(date +%s)
  # shellcheck disable=SC2046 # the test targets are words
  cargo mutants --jobs 1 --no-shuffle --colors never --file "$f" --output "$out" \
    "${diff_args[@]}" $(tests_for "$f") >"$out/run.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  summary=$(grep -E '^[0-9]+ mutants tested' "$out/run.log" | tail -1)
  echo "$f: ${summary:-no mutants run (see $out/run.log)} [${secs}s]"
  if [ -s "$out/mutants.out/missed.txt" ] || [ -s "$out/mutants.out/timeout.txt" ]; then
    sed 's/^/  missed: /' "$out/mutants.out/missed.txt" 2>/dev/null
    sed 's/^/  timeout: /' "$out/mutants.out/timeout.txt" 2>/dev/null
    status=1
  fi
  # 0: all caught; 2: missed; 3: timeouts; 4: baseline failed; others: error.
  case $rc in 0|2|3) ;; *) echo "  cargo mutants exited $rc: $out/run.log" >&2; status=1 ;; esac
done
exit $status
