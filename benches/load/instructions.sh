#!/usr/bin/env bash
# User-space instructions per routed connection: ch-edge-proxy and the floor (the minimal proxy
# of ../shared/tools/floor, when it is there), counted by valgrind's callgrind. Instructions,
# not seconds: the same binary and load give the same count whatever else the machine is doing,
# so a change to the hot path can be compared before and after on a busy machine. The kernel's
# share (about nine tenths of a routed connection's CPU here) is not counted: see run.sh's
# user_us / kernel_us columns for the split in time.
#
# Per proxy: the bench's 1,000-route table with PROXY v2 out (ch-edge-proxy one worker, its
# access log on; the floor as it is), a warm-up of WARMUP connections (every route used once,
# so first-use costs are not counted), counters zeroed, then COUNT connections
# (`loadgen conn`, 8 in flight), counters dumped: instructions / COUNT.
#
# Usage: benches/load/instructions.sh [--proxy-bin PATH]
# Environment: PROXIES [chp floor]  COUNT [2000]  WARMUP [4000]  LOADGEN  FLOOR  BUDGET_SECS [900]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
source "$ROOT/benches/lib.sh"
parse_args "$@"
PROXIES=${PROXIES:-chp floor}
COUNT=${COUNT:-2000}
WARMUP=${WARMUP:-4000}
BUDGET_SECS=${BUDGET_SECS:-900}
command -v valgrind >/dev/null || die "valgrind is needed (apt-get install valgrind)"
command -v callgrind_control >/dev/null || die "callgrind_control is needed (valgrind's package)"

loadgen_and_floor

W=$(mktemp -d /tmp/ch-edge-instructions.XXXXXX)
RESULTS=()
report() {
    echo
    echo "user-space instructions per routed connection (callgrind; $COUNT connections after $WARMUP)"
    local r
    for r in "${RESULTS[@]}"; do echo "$r"; done
}
start_bounds

for name in $PROXIES; do
    case $name in
        chp) [ -n "$PROXY_BIN" ] && [ -x "$PROXY_BIN" ] || { echo "skipping ch-edge-proxy (no --proxy-bin)" >&2; continue; } ;;
        floor) [ -n "${FLOOR:-}" ] && [ -x "$FLOOR" ] || { echo "skipping floor (not found)" >&2; continue; } ;;
        *) die "unknown proxy $name" ;;
    esac
    d=$W/$name
    mkdir -p "$d"
    start_backend "$d"
    case $name in
        chp)
            bench_config "$port" "$ports" 1000 >"$d/config.yaml"
            cmd=("$PROXY_BIN" run --config "$d/config.yaml") ;;
        floor)
            cmd=("$FLOOR" --mode epoll --listen "127.0.0.1:$port" --upstream "127.0.0.1:${ports%%,*}") ;;
    esac
    CH_EDGE_PROXY_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$d/callgrind.%p" \
        "${cmd[@]}" >"$d/proxy.log" 2>"$d/proxy.err" &
    ppid=$!
    PIDS+=("$ppid")
    "$LG" probe --target "127.0.0.1:$port" --timeout-secs 60 >/dev/null || die "$name did not route a probe"
    load=(conn --target "127.0.0.1:$port" --pids "$ppid" --clk-tck 100 --deadline-secs 300
          --concurrency 8 --routes 1000)
    "$LG" "${load[@]}" --count "$WARMUP" >"$d/warmup.out" 2>&1 || die "$name: warm-up failed"
    callgrind_control -z "$ppid" >/dev/null 2>&1 || die "callgrind_control could not zero $name's counters"
    "$LG" "${load[@]}" --count "$COUNT" >"$d/load.out" 2>&1 || die "$name: load failed"
    callgrind_control -d "$ppid" >/dev/null 2>&1 || die "callgrind_control could not dump $name's counters"
    stop "$ppid"; stop "$bpid"
    # The dump after zeroing is part 1; its "summary:" line is the instructions of every thread.
    ir=$(sed -n 's/^summary: *//p' "$d"/callgrind.*.1 | head -n 1)
    [ -n "$ir" ] || die "$name: no callgrind summary"
    RESULTS+=("$(printf '%-16s %10d' "$name" $((ir / COUNT)))")
    echo "[$name] $((ir / COUNT)) instructions per connection" >&2
done
report
