#!/usr/bin/env bash
# The cost of `cwleak check --trace` on an accept/fork/close loop:
#   bench/trace.sh [N]
# examples/leakyd in `correct` mode (accept, fork a handler per connection,
# close in the parent; the handler reads to the end and exits) serves N
# connections (default 3000) from `leakyd client` (connect, send a line,
# read the answer, close), both started by the command cwleak check wraps,
# so both are traced. ROUNDS (default 3) alternating rounds with and
# without --trace; prints each round's connections per second, CPU seconds
# and peak RSS, and the median slowdown. Needs root (BPF). Keep it short: the machine is shared.
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

# One run: prints "connections/s cpu_s maxrss_kib". CPU is user+sys of the
# check command and everything it reaped: cwleak (with its trace thread),
# the shell, the client, and the server (killed and reaped by the shell),
# so the kernel side of tracing (time in the BPF programs, charged to the
# traced processes) is in it. Peak RSS is the largest of those processes.
run() {
  local flag=$1 pid=$work/pid out=$work/out t=$work/t rus=$work/rus
  rm -f "$pid" "$out" "$t" "$rus"
  /usr/bin/time -f "%U %S %M" -o "$rus" "$CW" check $flag --pidfile "$pid" --settle 0 --no-config -- sh -c "
    $L correct --pidfile $pid >$out 2>/dev/null </dev/null &
    srv=\$!
    until grep -q '^listening' $out; do sleep 0.02; done
    port=\$(sed -n 's/^listening 127.0.0.1:\([0-9]*\) .*/\1/p' $out)
    a=\$(date +%s%N); $L client --port \$port -n $N; b=\$(date +%s%N)
    echo \$(( (b - a) / 1000 )) >$t
    kill \$srv; wait \$srv" >/dev/null 2>"$work/err" || true
  kill "$(cat "$pid")" 2>/dev/null || true
  [ -s "$t" ] || { cat "$work/err" >&2; exit 2; }
  awk -v n="$N" -v us="$(cat "$t")" -v r="$(tail -1 "$rus")" 'BEGIN {
    split(r, f, " "); printf "%.0f %.2f %d\n", n * 1e6 / us, f[1] + f[2], f[3] }'
}

off=() on=() offc=() onc=() offm=() onm=()
for r in $(seq "$ROUNDS"); do
  read -r c u m <<<"$(run "")"; off+=("$c"); offc+=("$u"); offm+=("$m")
  read -r c u m <<<"$(run --trace)"; on+=("$c"); onc+=("$u"); onm+=("$m")
  echo "round $r: off ${off[-1]} conn/s ${offc[-1]} cpu s ${offm[-1]} KiB; traced ${on[-1]} conn/s ${onc[-1]} cpu s ${onm[-1]} KiB"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mo=$(median "${off[@]}")
mt=$(median "${on[@]}")
co=$(median "${offc[@]}")
ct=$(median "${onc[@]}")
awk -v o="$mo" -v t="$mt" -v n="$N" -v co="$co" -v ct="$ct" -v mo="$(median "${offm[@]}")" -v mt="$(median "${onm[@]}")" 'BEGIN {
  printf "median over %d connections: off %d conn/s, traced %d conn/s: %.2fx the time (%.0f us more per connection)\n",
    n, o, t, o / t, 1e6 / t - 1e6 / o
  printf "cpu (user+sys, every process of the run): off %.2f s, traced %.2f s: %.0f us more per connection; peak RSS off %d KiB, traced %d KiB\n",
    co, ct, (ct - co) * 1e6 / n, mo, mt }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
