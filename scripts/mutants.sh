#!/usr/bin/env bash
# Mutation testing of the rule-bearing modules with cargo-mutants: each
# mutant (a rule flipped, a branch deleted, a return value replaced) must make
# a test fail, or be listed in .cargo/mutants.toml as equivalent, with why.
#
#   scripts/mutants.sh                  # every rule-bearing file, one at a time
#   scripts/mutants.sh src/diagnose/classify.rs ...   # these files only
#   MUTANTS_IN_DIFF=change.diff scripts/mutants.sh    # only code a diff touches
#   MUTANTS_OUT=DIR scripts/mutants.sh  # results under DIR (default target/mutants)
#   MUTANTS_TARGET_DIR=DIR              # build there (default target/mutants-build)
#   MUTANTS_JOBS=N                      # mutants built and tested at once (default 1)
#   MUTANTS_ONLY=missed.txt             # only the mutants named there (one a line, as
#                                       # `cargo mutants --list` names them)
#   MUTANTS_STAGES=1                    # stage 1 only
#
# Needs `cargo install --locked cargo-mutants` and root (the live tests).
#
# Two stages per file, both with the `mutants` cargo profile (Cargo.toml: no
# debug info, so each mutant's relink is cheap):
#   1. every mutant against the fast tests that pin the file: the unit tests
#      (--lib) and, where they matter, the recorded-fixture targets;
#   2. only the mutants stage 1 missed, against the stage 1 tests plus the
#      live tests that exercise the file (real processes, real software).
# A mutant counts as missed only when it survives both stages.
# One job by default (-j 1): on a small machine two builds at once only compete.
# Results go to $MUTANTS_OUT/<file>/{stage1,stage2}/mutants.out; one summary
# line per stage goes to stdout.
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
  src/source/settled.rs
  src/snapshot/*.rs
  src/check/thresholds.rs
  src/tuning/rules/*.rs
)
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("${default_files[@]}")
# Test-only files hold no mutants of their own.
files=($(printf '%s\n' "${files[@]}" | grep -v -E '(_tests|/tests)\.rs$'))

# The live tests run the example programs (the scenario driver, the socket
# population, leakyd); none links the library, so one build of them serves
# every mutant. The tests are built in another target directory (below), so
# they are told where the examples are.
cargo build --locked --quiet --examples || exit 2
export CWLEAK_SCENARIO_BIN="$PWD/target/debug/examples/scenario"
export CWLEAK_EXAMPLES_DIR="$PWD/target/debug/examples"

# Stage 1: the fast tests that pin a file (no live processes beyond what the
# unit tests start).
stage1_tests() {
  case "$1" in
    src/diagnose/* | src/graph.rs) echo "lib fixtures snapshots" ;;
    src/snapshot/*) echo "lib snapshot_fuzz" ;;
    src/tuning/*) echo "lib states_cli" ;;
    *) echo "lib" ;;
  esac
}
# Stage 2: added to stage 1's for the mutants it missed.
stage2_tests() {
  case "$1" in
    # real_software (real servers, minutes per run) where the holders' roles are decided.
    src/diagnose/classify.rs | src/diagnose/context.rs)
      echo "scan_live scan_patterns unseen_holders real_software" ;;
    src/diagnose/* | src/graph.rs) echo "scan_live scan_patterns unseen_holders" ;;
    src/source/recheck.rs) echo "scan_live" ;;
    src/source/settled.rs) echo "serve" ;;
    src/source/prune.rs) echo "scan_live fd_tables" ;;
    src/snapshot/*) echo "capture" ;;
    src/check/*) echo "check" ;;
    src/tuning/*) echo "states_live" ;;
    src/growth.rs) echo "check watch" ;;
  esac
}
cargo_args() {
  local x
  for x in "$@"; do
    if [ "$x" = lib ]; then echo --cargo-arg=--lib; else echo "--cargo-arg=--test=$x"; fi
  done
  # Symbolizing this test's own frames to a file and line needs debug info,
  # which the mutants profile leaves out (no rule-bearing file is involved).
  echo --cargo-test-arg=-- --cargo-test-arg=--skip
  echo --cargo-test-arg=source::trace::symbols::tests::names_a_libc_function_and_a_line_of_this_test
}
# A regex matching exactly the mutant names listed in file $1.
names_re() { echo "^($(sed -e 's/[][\\.^$*+?(){}|]/\\&/g' "$1" | paste -sd'|'))\$"; }
# "N mutants tested in T: a missed, b caught, c unviable" from a run's log.
summary_of() { grep -E '^[0-9]+ mutants? tested' "$1" | tail -1; }

# One target directory kept between runs: cargo-mutants builds a copy of
# the tree, and with its own target/ every run would rebuild every
# dependency first.
export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-$PWD/target/mutants-build}"
root="${MUTANTS_OUT:-target/mutants}"

# A mutant that makes a test loop forever is stopped at cargo-mutants'
# timeout, but the test binary may outlive it (a test installs a SIGTERM
# handler), spinning on a core: after a stage with timeouts, test binaries of
# this build directory still running are killed.
reap_timeouts() { # stage directory
  [ -s "$1/mutants.out/timeout.txt" ] || return 0
  pkill -KILL -f "^$CARGO_TARGET_DIR/" 2>/dev/null || true
}

status=0
for f in "${files[@]}"; do
  out="$root/${f//\//_}"
  rm -rf "$out"
  mkdir -p "$out/stage1" "$out/stage2"
  select_args=()
  [ -n "${MUTANTS_IN_DIFF:-}" ] && select_args=(--in-diff "$MUTANTS_IN_DIFF")
  [ -n "${MUTANTS_ONLY:-}" ] && select_args+=(--re "$(names_re "$MUTANTS_ONLY")")
  t1=$(stage1_tests "$f")
  start=$(date +%s)
  # shellcheck disable=SC2046 # the test targets are words
  cargo mutants --profile mutants --jobs "${MUTANTS_JOBS:-1}" --no-shuffle --colors never --file "$f" \
    --output "$out/stage1" "${select_args[@]}" $(cargo_args $t1) >"$out/stage1/run.log" 2>&1
  rc=$?
  reap_timeouts "$out/stage1"
  secs=$(( $(date +%s) - start ))
  s=$(summary_of "$out/stage1/run.log")
  echo "$f: stage 1 ($t1): ${s:-no mutants run (see $out/stage1/run.log)} [${secs}s]"
  case $rc in 0|2|3) ;; *) echo "  cargo mutants exited $rc: $out/stage1/run.log" >&2; status=1; continue ;; esac

  final="$out/stage1/mutants.out"
  t2=$(stage2_tests "$f")
  if [ -s "$final/missed.txt" ] && [ -n "$t2" ] && [ "${MUTANTS_STAGES:-2}" != 1 ]; then
    re=$(names_re "$final/missed.txt")
    start=$(date +%s)
    # shellcheck disable=SC2046
    cargo mutants --profile mutants --jobs "${MUTANTS_JOBS:-1}" --no-shuffle --colors never --file "$f" \
      --output "$out/stage2" --re "$re" $(cargo_args $t1 $t2) >"$out/stage2/run.log" 2>&1
    rc=$?
    reap_timeouts "$out/stage2"
    secs=$(( $(date +%s) - start ))
    s=$(summary_of "$out/stage2/run.log")
    echo "$f: stage 2 (+ $t2): ${s:-no mutants run (see $out/stage2/run.log)} [${secs}s]"
    case $rc in 0|2|3) ;; *) echo "  cargo mutants exited $rc: $out/stage2/run.log" >&2; status=1; continue ;; esac
    final="$out/stage2/mutants.out"
  fi
  if [ -s "$final/missed.txt" ] || [ -s "$out/stage1/mutants.out/timeout.txt" ] \
    || [ -s "$out/stage2/mutants.out/timeout.txt" ]; then
    sed 's/^/  missed: /' "$final/missed.txt" 2>/dev/null
    cat "$out"/stage*/mutants.out/timeout.txt 2>/dev/null | sed 's/^/  timeout: /'
    status=1
  fi
done
exit $status
