#!/usr/bin/env bash
# Syscalls and context switches per routed connection: ch-edge-proxy, the floor (the minimal
# proxy of ../shared/tools/floor, when it is there) and HAProxy, side by side. Counts, not
# times, so the figures do not depend on what else runs on the machine.
#
# Per proxy, freshly started with the bench's 1,000-route table and PROXY v2 out
# (benches/load/README.md), and per mode:
#   1. `loadgen conn` (CONN_COUNT connections, CONCURRENCY in flight) with nothing attached:
#      context switches = voluntary + nonvoluntary switches summed over /proc/PID/task/*/status,
#      after minus before, per connection;
#   2. the same load under `strace -f -c -p PID` (every thread): calls per syscall, per
#      connection (errors, e.g. reads or accepts that found nothing, in brackets).
#
# Usage: benches/load/syscalls.sh [--proxy-bin PATH]
# Environment: PROXIES [chp floor haproxy]  MODES [pinned shared]  CONN_COUNT [5000]
#   CONCURRENCY [32]  ROUTES [1000]  LOADGEN (prebuilt loadgen)  FLOOR (prebuilt floor binary;
#   else built from FLOOR_DIR with CARGO_TARGET_DIR=/tmp/floor-target)  BUDGET_SECS [600]
#   CHP_EXTRA (YAML lines added to ch-edge-proxy's listener, e.g. "    defer_accept: true")
# pinned: each proxy on core 0 with one thread (HAProxy nbthread 1), load on core 1;
# shared: two threads each (HAProxy nbthread 2, ch-edge-proxy one worker per core), unpinned.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
source "$ROOT/benches/lib.sh"
parse_args "$@"
PROXIES=${PROXIES:-chp floor haproxy}
MODES=${MODES:-pinned shared}
CONN_COUNT=${CONN_COUNT:-5000}
CONCURRENCY=${CONCURRENCY:-32}
ROUTES=${ROUTES:-1000}
BUDGET_SECS=${BUDGET_SECS:-600}
CHP_EXTRA=${CHP_EXTRA:-}
CLK_TCK=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v strace >/dev/null || die "strace is needed (apt-get install strace)"

loadgen_and_floor

W=$(mktemp -d /tmp/ch-edge-syscalls.XXXXXX)
available=()
for p in $PROXIES; do
    case $p in
        chp) [ -n "$PROXY_BIN" ] && [ -x "$PROXY_BIN" ] && available+=(chp) || echo "skipping ch-edge-proxy (no --proxy-bin)" >&2 ;;
        floor) [ -n "${FLOOR:-}" ] && [ -x "$FLOOR" ] && available+=(floor) || echo "skipping floor (not found)" >&2 ;;
        haproxy) command -v haproxy >/dev/null && available+=(haproxy) || echo "skipping haproxy (not installed)" >&2 ;;
        *) die "unknown proxy $p" ;;
    esac
done
[ ${#available[@]} -gt 0 ] || die "no proxy to measure"

report() {
    local mode name calls f
    for mode in $MODES; do
        echo
        echo "$mode: per routed connection ($CONN_COUNT connections, $CONCURRENCY in flight; strace -f -c)"
        printf '%-16s' syscall; for name in "${available[@]}"; do printf '%16s' "$name"; done; echo
        calls=$(cat "$W"/sc."$mode".* 2>/dev/null | awk '$1 != "total" && $1 != "ctx_switches" {print $1}' | sort -u)
        for c in $calls total ctx_switches; do
            printf '%-16s' "$c"
            for name in "${available[@]}"; do
                f=$W/sc.$mode.$name
                printf '%16s' "$(awk -v c="$c" '$1 == c { printf "%.2f", $2; if ($3 > 0) printf " (%.2f)", $3; found=1 }
                    END { if (!found) printf "-" }' "$f" 2>/dev/null || echo -)"
            done
            echo
        done
    done
    echo "(brackets: calls that returned an error, e.g. EAGAIN; ctx_switches: voluntary + nonvoluntary,"
    echo " all threads, measured in a run without strace)"
}
start_bounds

# ctx PID -> context switches of every thread of PID so far
ctx() {
    cat /proc/"$1"/task/*/status 2>/dev/null \
        | awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { s += $2 } END { print s + 0 }'
}

for mode in $MODES; do
    case $mode in
        pinned) THREADS=1; PIN_PROXY="taskset -c 0"; PIN_LOAD="taskset -c 1" ;;
        shared) THREADS=2; PIN_PROXY=""; PIN_LOAD="" ;;
        *) die "unknown mode $mode" ;;
    esac
    for name in "${available[@]}"; do
        d=$W/$mode.$name
        mkdir -p "$d"
        # shellcheck disable=SC2086 # PIN_LOAD is a command and its arguments, or nothing
        start_backend "$d" $PIN_LOAD
        case $name in
            chp)
                bench_config "$port" "$ports" "$ROUTES" "$CHP_EXTRA" >"$d/config.yaml"
                $PIN_PROXY "$PROXY_BIN" run --config "$d/config.yaml" >"$d/proxy.log" 2>&1 & ;;
            floor)
                $PIN_PROXY "$FLOOR" --mode epoll --listen "127.0.0.1:$port" \
                    --upstream "127.0.0.1:${ports%%,*}" >"$d/proxy.log" 2>&1 & ;;
            haproxy)
                "$LG" routes --format haproxy --routes "$ROUTES" --ports "$ports" >"$d/sni.map"
                {
                    printf 'global\n    nbthread %s\n    maxconn 4000\ndefaults\n    mode tcp\n' "$THREADS"
                    printf '    timeout connect 3s\n    timeout client 1h\n    timeout server 1h\n'
                    printf 'frontend bench\n    bind 127.0.0.1:%s\n    tcp-request inspect-delay 5s\n' "$port"
                    printf '    tcp-request content accept if { req_ssl_hello_type 1 }\n'
                    printf '    use_backend %%[req.ssl_sni,lower,map(%s)]\n' "$d/sni.map"
                    j=0
                    for p in ${ports//,/ }; do
                        printf 'backend b%d\n    server s1 127.0.0.1:%s send-proxy-v2\n' "$j" "$p"
                        j=$((j + 1))
                    done
                } >"$d/haproxy.cfg"
                $PIN_PROXY haproxy -db -f "$d/haproxy.cfg" >"$d/proxy.log" 2>&1 & ;;
        esac
        ppid=$!
        PIDS+=("$ppid")
        "$LG" probe --target "127.0.0.1:$port" --timeout-secs 15 || die "$name did not route a probe"
        load=(conn --target "127.0.0.1:$port" --pids "$ppid" --clk-tck "$CLK_TCK" --deadline-secs 120
              --count "$CONN_COUNT" --concurrency "$CONCURRENCY" --routes "$ROUTES")
        c0=$(ctx "$ppid")
        $PIN_LOAD "$LG" "${load[@]}" >"$d/ctx.out" 2>&1 || die "$name: load failed: $(tail -n 3 "$d/ctx.out")"
        c1=$(ctx "$ppid")
        strace -f -c -p "$ppid" -o "$d/strace" 2>"$d/strace.err" &
        spid=$!
        PIDS+=("$spid")
        sleep 1 # strace attaches to every thread
        $PIN_LOAD "$LG" "${load[@]}" >"$d/strace.out" 2>&1 || die "$name: load failed under strace"
        kill -INT "$spid"; wait "$spid" 2>/dev/null || true; untrack "$spid"
        stop "$ppid"; stop "$bpid"
        echo "[$mode $name] $(grep '^RESULT' "$d/ctx.out" | cut -d' ' -f2-4)" >&2
        # strace -c lines: % time, seconds, usecs/call, calls, [errors], syscall
        awk -v n="$CONN_COUNT" -v cs="$((c1 - c0))" '
            $4 ~ /^[0-9]+$/ && $NF ~ /^[a-z_0-9]+$/ {
                e = (NF == 6) ? $5 : 0; printf "%s %.4f %.4f\n", $NF, $4 / n, e / n }
            END { printf "ctx_switches %.4f 0\n", cs / n }' "$d/strace" >"$W/sc.$mode.$name"
    done
done
report
