#!/usr/bin/env bash
# What an always-on cwleak costs: bench/serve_cost.sh [S] [P] [INTERVAL] [DURATION]
#   Builds the load of bench/run.sh (S sockets, 20% in CLOSE_WAIT, across P
#   processes, in a network and pid namespace of its own; needs root), then
#   runs, one after the other on that one load, `cwleak serve --interval
#   INTERVAL` and `cwleak watch --interval INTERVAL`, each for DURATION
#   seconds (default 15s and 75); with CW_BASE, the base binary runs side
#   by side with it, started half an interval later (same load, same noise). It samples each process's CPU time
#   (utime+stime of all its threads, /proc/PID/stat) once a second and
#   reports:
#     first     CPU seconds of the first interval (start-up and the first, full look)
#     per-look  median CPU seconds of the later intervals (one look each)
#     core%     all CPU seconds / wall seconds, the whole run, start-up included
#     HWM MiB   peak RSS (VmHWM), RSS MiB: RSS at the end
#   For serve it also scrapes /metrics after every look and checks that the
#   answer comes from the last scan: cwleak_scans_total counts the looks so
#   far, and the CLOSE_WAIT count of the load's namespace is the load's own.
#   Last, the kernel's own floor: the system CPU seconds `ss` costs in the
#   load's namespace to count every socket by state (no tcp_info), and to
#   list only the CLOSE_WAIT sockets with tcp_info (median of 3 each).
#   CPU time, not wall time: it is what a fleet pays, and it stays meaningful
#   on a machine busy with other work.
# Environment: MODES="serve watch"  CLOSE_WAIT (the load's share of sockets in
#   CLOSE_WAIT, 0-0.5; default 0.2; 0: a host without leaks)  CW (cwleak binary; default: built here)
#   CW_BASE (a second binary, measured the same way at the same time, as base_*)
#   CW_ARGS (extra args for both)  CARGO_TARGET_DIR (default target/).
set -euo pipefail
S=${1:-50000}
P=${2:-200}
INTERVAL=${3:-15s}
DURATION=${4:-75}
MODES=${MODES:-serve watch}
CLOSE_WAIT=${CLOSE_WAIT:-0.2}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ "$(id -u)" = 0 ] || { echo "bench/serve_cost.sh: needs root (namespaces)" >&2; exit 2; }
need() { # command package
  command -v "$1" >/dev/null || { apt-get install -y -qq "$2" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2"; }; }
}
need curl curl
need ss iproute2
need nsenter util-linux

target=${CARGO_TARGET_DIR:-$here/target}
if [ -z "${CW:-}" ]; then
  cargo build --release --quiet --bin cwleak
  CW=$target/release/cwleak
fi
cargo build --release --quiet --example loadgen
LOADGEN=$target/release/examples/loadgen
case $INTERVAL in
  *ms) ivl_ms=${INTERVAL%ms} ;;
  *s) ivl_ms=$((${INTERVAL%s} * 1000)) ;;
  *) ivl_ms=$((INTERVAL * 1000)); INTERVAL=${INTERVAL}s ;;
esac
work=$(mktemp -d /tmp/cwleak-serve-cost.XXXXXX)

mkfifo "$work/in"
"$LOADGEN" --sockets "$S" --procs "$P" --close-wait "$CLOSE_WAIT" <"$work/in" >"$work/ready" 2>"$work/loadgen.err" &
lg=$!
exec 9>"$work/in"
children=
cleanup() {
  for c in $children; do kill "$c" 2>/dev/null && wait "$c" 2>/dev/null; done
  exec 9>&- || true
  wait "$lg" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 600); do
  [ -s "$work/ready" ] && break
  kill -0 "$lg" 2>/dev/null || { cat "$work/loadgen.err" >&2; exit 2; }
  sleep 0.2
done
echo "load: $(cat "$work/ready")"
netns=$(readlink "/proc/$lg/ns/net" | tr -dc 0-9)
close_wait=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["close_wait"])' "$work/ready")

port=$((20000 + RANDOM % 20000))
# Runs of one MODE side by side: "name:bin" each, the second started half an
# interval after the first (their looks do not overlap), so both meet the
# same load and the same noise from whatever else the machine runs. Each is
# sampled once a second for DURATION s of its own, then stopped.
# Samples: "t_ms ticks hwm_kib rss_kib"; scrapes: "look scans cw_in_load".
run_side_by_side() { # mode name:bin...
  local mode=$1; shift
  local -a names=() bins=() pids=() t0=() looks=() state=()
  local i=0 spec now el ticks hwm rss scans cw left first
  for spec in "$@"; do
    names[i]=${spec%%:*}; bins[i]=${spec#*:}; looks[i]=0; state[i]=waiting
    : >"$work/${names[i]}.samples"; : >"$work/${names[i]}.scrapes"
    i=$((i + 1))
  done
  first=$(date +%s%N)
  while :; do
    left=0
    for i in "${!names[@]}"; do
      now=$(date +%s%N)
      if [ "${state[i]}" = waiting ]; then
        if [ $(((now - first) / 1000000)) -lt $((i * ivl_ms / 2)) ]; then left=1; continue; fi
        case $mode in
          serve) "${bins[i]}" serve --interval "$INTERVAL" --listen "127.0.0.1:$((port + i))" \
                   ${CW_ARGS:-} >/dev/null 2>"$work/${names[i]}.err" & ;;
          watch) "${bins[i]}" watch --interval "$INTERVAL" ${CW_ARGS:-} \
                   >/dev/null 2>"$work/${names[i]}.err" & ;;
        esac
        pids[i]=$!; children+=" $!"; t0[i]=$(date +%s%N); state[i]=running
      fi
      [ "${state[i]}" = running ] || continue
      el=$(((now - t0[i]) / 1000000))
      if [ "$el" -ge $((DURATION * 1000)) ]; then
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
        state[i]=done
        echo "${names[i]}: $(wc -l <"$work/${names[i]}.samples") samples"
        continue
      fi
      left=1
      kill -0 "${pids[i]}" 2>/dev/null ||
        { cat "$work/${names[i]}.err" >&2; echo "${names[i]} exited early" >&2; exit 2; }
      # utime+stime (fields 14 and 15, counted after the ")" that ends comm).
      read -r ticks < <(sed 's/.*) //' "/proc/${pids[i]}/stat" | awk '{print $12 + $13}')
      hwm=$(awk '/^VmHWM/{print $2}' "/proc/${pids[i]}/status")
      rss=$(awk '/^VmRSS/{print $2}' "/proc/${pids[i]}/status")
      echo "$el $ticks $hwm $rss" >>"$work/${names[i]}.samples"
      # Half an interval after each look starts, the look is done: scrape.
      if [ "$mode" = serve ] && [ $((2 * el)) -ge $(((2 * looks[i] + 1) * ivl_ms)) ]; then
        looks[i]=$((looks[i] + 1))
        curl -sf "http://127.0.0.1:$((port + i))/metrics" >"$work/m" || : >"$work/m"
        scans=$(awk '/^cwleak_scans_total /{print $2}' "$work/m")
        cw=$(awk -v ns="$netns" '/^cwleak_tcp_sockets\{/ && index($0, "netns=\"" ns "\"") && index($0, "state=\"CLOSE_WAIT\"") {print $2}' "$work/m")
        # An answer without the series: no socket of that state (a load without CLOSE_WAIT).
        [ -n "$scans" ] && cw=${cw:-0}
        echo "${looks[i]} ${scans:-none} ${cw:-none}" >>"$work/${names[i]}.scrapes"
      fi
    done
    [ "$left" = 1 ] || break
    sleep 1
  done
}

runs=()
for m in $MODES; do
  if [ -n "${CW_BASE:-}" ]; then
    run_side_by_side "$m" "$m:$CW" "base_$m:$CW_BASE"; runs+=("$m" "base_$m")
  else
    run_side_by_side "$m" "$m:$CW"; runs+=("$m")
  fi
done

# What the kernel alone charges for the sockets a look must read, in the
# load's namespace: system CPU of `ss` (median of 3 runs), counting every
# socket by state without tcp_info, and keeping only CLOSE_WAIT with it.
python3 - "$lg" "$ivl_ms" <<'PY' >"$work/floor" || echo "  not measured (ss or nsenter failed)" >"$work/floor"
import resource, statistics as st, subprocess, sys
lg, ivl = sys.argv[1], float(sys.argv[2]) / 1000
def sys_cpu(args):
    runs = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
        subprocess.run(["nsenter", f"--net=/proc/{lg}/ns/net", "ss", *args],
                       stdout=subprocess.DEVNULL, check=True)
        runs.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime - before)
    return st.median(runs)
for what, args in [("every socket counted by state (ss -tanH)", ["-tanH"]),
                   ("CLOSE_WAIT only, with tcp_info (ss -taniH state close-wait)",
                    ["-taniH", "state", "close-wait"])]:
    s = sys_cpu(args)
    print(f"  {what}: {s:.3f} s, {100 * s / ivl:.2f}% of a core per interval")
PY
status=0
python3 - "$work" "$ivl_ms" "$S" "$P" "$INTERVAL" "$DURATION" "$close_wait" "$(getconf CLK_TCK)" "${runs[@]}" <<'PY' || status=$?
import sys, os, statistics as st
work, ivl, S, P, INTERVAL, DUR, close_wait, hz = sys.argv[1:9]
ivl = float(ivl) / 1000; hz = float(hz)
print(f"\n{S} sockets / {P} processes, --interval {INTERVAL}, {DUR} s per run, "
      f"{os.cpu_count()} cores (CPU seconds: utime+stime, all threads)")
print(f"{'run':12} {'first s':>8} {'per-look s':>10} {'core%':>7} {'HWM MiB':>8} {'RSS MiB':>8}")
bad = False
for name in sys.argv[9:]:
    rows = [tuple(map(float, l.split())) for l in open(f"{work}/{name}.samples")]
    # Interval k (k >= 1) ends half an interval after look k starts.
    ends = []
    k = 0
    for t, ticks, _, _ in rows:
        if t / 1000 >= (k + 0.5) * ivl:
            ends.append(ticks)
            k += 1
    deltas = [(b - a) / hz for a, b in zip(ends, ends[1:])]
    first = ends[0] / hz if ends else float("nan")
    per = st.median(deltas) if deltas else float("nan")
    wall = rows[-1][0] / 1000
    core = 100 * rows[-1][1] / hz / wall
    print(f"{name:12} {first:8.3f} {per:10.3f} {core:7.2f} {rows[-1][2]/1024:8.1f} {rows[-1][3]/1024:8.1f}")
    path = f"{work}/{name}.scrapes"
    if os.path.getsize(path) if os.path.exists(path) else 0:
        for l in open(path):
            look, scans, cw = l.split()
            ok = scans != "none" and int(float(scans)) == int(look) and cw == close_wait
            bad |= not ok
            if not ok:
                print(f"  /metrics after look {look}: cwleak_scans_total {scans}, CLOSE_WAIT in the load's namespace {cw} (load: {close_wait}): NOT from the last scan")
        print(f"  /metrics checked after each of {sum(1 for _ in open(path))} looks" + ("" if bad else ": every answer from the last scan"))
sys.exit(1 if bad else 0)
PY
echo "kernel floor, system CPU in the load's namespace (median of 3):"
cat "$work/floor"
exit "$status"
