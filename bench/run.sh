#!/usr/bin/env bash
# The benchmark: bench/run.sh [S] [P]    (as root; see docs/performance.md)
#
# Builds a load of S TCP sockets (S/2 loopback connections, 20% of S in
# CLOSE_WAIT) across P processes with examples/loadgen.rs, in a network and
# pid namespace of its own. On that one load it runs, ROUNDS times in an
# order rotated every round:
#   cwleak       cwleak scan --settle 0 --format json
#   cwleak_proc  the same with --fds proc (readlink per /proc/PID/fd entry)
#   ss           ss -tanp                (in the load's namespace)
#   lsof         lsof -nP -iTCP          (in the load's namespace)
#   floor        bench/floor/floor.c: readlink every fd + sock_diag dump
#   floor_c      the same, the kernel keeping only CLOSE_WAIT
# then the settle window's re-check cost, and prints medians, min-max, peak
# RSS and ratios.
#
# Everything it runs is in this repository or a Debian package: it installs
# iproute2 (ss, nsenter is util-linux), lsof, time, gcc and python3 with
# apt-get when they are missing.
# Environment: ROUNDS=7  SKIP="ss lsof" (tools to leave out)  CW_ARGS (extra
#   cwleak args)  CW_BASE (another cwleak binary, e.g. the build before a
#   change: measured in the same rotation as cwleak_base)  CARGO_TARGET_DIR
#   (default target/).
set -euo pipefail
S=${1:-50000}
P=${2:-200}
ROUNDS=${ROUNDS:-7}
SKIP=${SKIP:-}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: needs root (namespaces, nsenter)" >&2; exit 2; }

need() { # command package
  command -v "$1" >/dev/null 2>&1 && return
  echo "bench/run.sh: installing $2 (for $1)" >&2
  apt-get install -y -qq "$2" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; } ||
    { echo "bench/run.sh: $1 is missing and apt-get could not install $2" >&2; exit 2; }
}
[ -x /usr/bin/time ] || need /usr/bin/time time
need lsof lsof
need ss iproute2
need nsenter util-linux
need cc gcc
need python3 python3

target=${CARGO_TARGET_DIR:-$here/target}
cargo build --release --quiet --bin cwleak --example loadgen
CW=$target/release/cwleak
LOADGEN=$target/release/examples/loadgen
work=$(mktemp -d /tmp/cwleak-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/floor" "$here/bench/floor/floor.c"

# The load: stdin is a fifo we hold open; closing it ends the load.
mkfifo "$work/in"
"$LOADGEN" --sockets "$S" --procs "$P" <"$work/in" >"$work/ready" 2>"$work/loadgen.err" &
lg=$!
exec 9>"$work/in"
cleanup() { exec 9>&- || true; wait "$lg" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 600); do
  [ -s "$work/ready" ] && break
  kill -0 "$lg" 2>/dev/null || { cat "$work/loadgen.err" >&2; exit 2; }
  sleep 0.2
done
echo "load: $(cat "$work/ready")"
NS=/proc/$lg/ns/net

declare -A CMD
CMD[cwleak]="$CW scan --settle 0 --format json ${CW_ARGS:-}"
CMD[cwleak_proc]="$CW scan --settle 0 --format json --fds proc ${CW_ARGS:-}"
CMD[ss]="nsenter --net=$NS ss -tanp"
CMD[lsof]="nsenter --net=$NS lsof -nP -iTCP"
CMD[floor]="nsenter --net=$NS $work/floor"
CMD[floor_c]="nsenter --net=$NS $work/floor -c"
[ -n "${CW_BASE:-}" ] && CMD[cwleak_base]="$CW_BASE scan --settle 0 --format json ${CW_ARGS:-}"
tools=()
for t in cwleak ${CW_BASE:+cwleak_base} cwleak_proc ss lsof floor floor_c; do
  case " $SKIP " in *" $t "*) ;; *) tools+=("$t") ;; esac
done

measure() { # tool round -> appends "tool secs kib" to results
  # cwleak exits 1 when it finds leaks: that is its answer, not a failure.
  # Wall time from the shell clock (ns; /usr/bin/time's %e has 10 ms steps),
  # peak RSS (KiB) from /usr/bin/time.
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$work/t" ${CMD[$1]} >"$work/out.$1" 2>/dev/null || true
  t1=$(date +%s%N)
  echo "$1 $(((t1 - t0) / 1000))e-6 $(tail -1 "$work/t")" >>"$work/results.$2"
}
echo "warm-up (the first /proc walk after the load is built is much slower)..."
for t in "${tools[@]}"; do measure "$t" warm; done
echo "floor counts: $(cat "$work/out.floor" 2>/dev/null)"
for r in $(seq "$ROUNDS"); do
  # Rotate the order each round so drifting noise hits every tool alike.
  n=${#tools[@]}
  for k in $(seq 0 $((n - 1))); do measure "${tools[$(((k + r) % n))]}" rounds; done
done

# Settle re-check: --settle 100ms vs --settle 0, alternated.
CMD[s0]="$CW scan --settle 0 --format json"
CMD[s100]="$CW scan --settle 100ms --format json"
for r in $(seq "$ROUNDS"); do
  measure s0 settle
  measure s100 settle
done

# Where cwleak's time goes on this load (three looks, phase by phase; it
# exits 1 when it finds leaks, hence the || true under pipefail).
for r in 1 2 3; do
  CWLEAK_TIMINGS=1 $CW scan --settle 0 --format json 2>&1 >/dev/null |
    sed -n 's/^cwleak timing: //p' | tr '\n' ' ' >>"$work/phases" || true
  echo >>"$work/phases"
done

python3 - "$work/results.rounds" "$work/results.settle" "$S" "$P" "$ROUNDS" <<'PY'
import sys, statistics as st
from collections import defaultdict
def load(p):
    d = defaultdict(list)
    for line in open(p):
        t, s, k = line.split()
        d[t].append((float(s), int(k)))
    return d
d = load(sys.argv[1]); S, P, R = sys.argv[3:6]
print(f"\n{S} sockets / {P} processes, {R} alternating rounds (wall s, peak RSS MiB)")
print(f"{'tool':11} {'median':>8} {'min-max':>15} {'RSS MiB':>8}")
med = {}
for t, v in d.items():
    secs = [x[0] for x in v]; med[t] = st.median(secs)
    print(f"{t:11} {med[t]:8.3f} {min(secs):7.3f}-{max(secs):<7.3f} {max(x[1] for x in v)/1024:8.1f}")
for cw in ('cwleak', 'cwleak_base', 'cwleak_proc'):
    if cw not in med:
        continue
    for other in ('ss', 'lsof', 'floor', 'floor_c'):
        if other in med and med[other] > 0:
            print(f"{cw}/{other}: {med[cw]/med[other]:.2f}x")
s = load(sys.argv[2])
if s:
    a = st.median(x[0] for x in s['s0']); b = st.median(x[0] for x in s['s100'])
    print(f"settle: --settle 0 {a:.3f} s, --settle 100ms {b:.3f} s -> re-check cost {b - a - 0.1:+.3f} s")
PY
echo "cwleak phases (CWLEAK_TIMINGS=1, s):"
sed 's/^/  /' "$work/phases"

