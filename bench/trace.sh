#!/usr/bin/env bash
# The cost of `cwleak check --trace` on an accept/fork/close loop:
#   bench/trace.sh [N]
# examples/leakyd in `correct` mode (accept, fork a handler per connection,
# close in the parent; the handler reads to the end and exits) serves N
# connections (default 3000) from `leakyd client` (connect, send a line,
# read the answer, close), both started by the command cwleak check wraps,
# so both are traced. ROUNDS (default 3) alternating rounds with and
# without --trace; prints each round's connections per second and the
# median slowdown. Needs root (BPF). Keep it short: the machine is shared.
set -euo pipefail
N=${1:-3000}
ROUNDS=${ROUNDS:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ "$(id -u)" = 0 ] || { echo "bench/trace.sh: needs root (BPF)" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-$here/target}
cargo build --release --quiet --bin cwleak --example leakyd
CW=$target/release/cwleak
L=$target/release/examples/leakyd
work=$(mktemp -d /tmp/cwleak-trace-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# One run: prints connections per second.
run() {
  local flag=$1 pid=$work/pid out=$work/out t=$work/t
  rm -f "$pid" "$out" "$t"
  "$CW" check $flag --pidfile "$pid" --settle 0 --no-config -- sh -c "
    $L correct --pidfile $pid >$out 2>/dev/null </dev/null &
    until grep -q '^listening' $out; do sleep 0.02; done
    port=\$(sed -n 's/^listening 127.0.0.1:\([0-9]*\) .*/\1/p' $out)
    a=\$(date +%s%N); $L client --port \$port -n $N; b=\$(date +%s%N)
    echo \$(( (b - a) / 1000 )) >$t" >/dev/null 2>"$work/err" || true
  kill "$(cat "$pid")" 2>/dev/null || true
  [ -s "$t" ] || { cat "$work/err" >&2; exit 2; }
  awk -v n="$N" -v us="$(cat "$t")" 'BEGIN { printf "%.0f\n", n * 1e6 / us }'
}

off=() on=()
for r in $(seq "$ROUNDS"); do
  off+=("$(run "")")
  on+=("$(run --trace)")
  echo "round $r: off ${off[-1]} conn/s, traced ${on[-1]} conn/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mo=$(median "${off[@]}")
mt=$(median "${on[@]}")
awk -v o="$mo" -v t="$mt" -v n="$N" 'BEGIN {
  printf "median over %d connections: off %d conn/s, traced %d conn/s: %.2fx the time (%.0f us more per connection)\n",
    n, o, t, o / t, 1e6 / t - 1e6 / o }'
