# Shared by the scripts of benches/load and benches/tls (sourced, not run): the command line,
# child tracking, cleanup, the bound on the whole run, stopping a child, reading `key=value`
# fields, the loadgen and floor binaries. A script sources it first, calls `parse_args "$@"`,
# and once W (its work directory) and BUDGET_SECS are set, `start_bounds`; it defines `report`
# (printed when interrupted).

die() { echo "error: $*" >&2; exit 1; }

# parse_args ARGS -> PROXY_BIN (--proxy-bin, else $CH_EDGE_PROXY) and QUICK (--quick: 1)
parse_args() {
    PROXY_BIN=${CH_EDGE_PROXY:-}
    QUICK=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --proxy-bin) PROXY_BIN=$2; shift 2 ;;
            --quick) QUICK=1; shift ;;
            *) echo "unknown argument: $1" >&2; exit 2 ;;
        esac
    done
}

# Live children only (pids are dropped once reaped, so none can be reused).
PIDS=()
untrack() { local p keep=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && echo "work directory kept: $W" >&2 || rm -rf "$W"
}

# start_bounds: cleanup on exit, partial results when interrupted, and a watchdog that
# bounds the whole run (every client step has its own deadline besides).
start_bounds() {
    trap cleanup EXIT
    trap 'echo "interrupted; partial results:" >&2; report; exit 130' INT TERM
    (
        trap 'kill "$s" 2>/dev/null; exit 0' TERM
        sleep "$BUDGET_SECS" & s=$!
        wait "$s"
        echo "time budget of ${BUDGET_SECS}s exceeded" >&2
        kill -TERM $$
    ) &
    PIDS+=($!)
}

# stop PID: SIGTERM, up to 5 s grace, then SIGKILL; reaps the child.
stop() {
    local pid=$1 i
    if kill -TERM "$pid" 2>/dev/null; then
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    untrack "$pid"
}

# loadgen_and_floor -> LG (the loadgen binary: $LOADGEN, else built) and FLOOR (the floor's
# binary: $FLOOR, else built from ../shared/tools/floor into /tmp/floor-target when its source is
# there; empty otherwise). Needs ROOT.
loadgen_and_floor() {
    if [ -z "${LOADGEN:-}" ]; then
        (cd "$ROOT" && cargo build --quiet --release --example loadgen)
        LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/loadgen
    fi
    LG=$LOADGEN
    if [ -z "${FLOOR:-}" ]; then
        local dir
        for dir in ${FLOOR_DIR:-} "$ROOT/../shared/tools/floor" "$ROOT/../../shared/tools/floor"; do
            if [ -f "$dir/Cargo.toml" ]; then
                CARGO_TARGET_DIR=/tmp/floor-target cargo build --quiet --release --manifest-path "$dir/Cargo.toml"
                FLOOR=/tmp/floor-target/release/floor
                break
            fi
        done
    fi
}

# start_backend DIR [PIN...] -> bpid, ports (comma-separated) and port (a free one for the
# proxy): the loadgen backend with four ports, started (under PIN, e.g. taskset) and tracked.
start_backend() {
    local dir=$1
    shift
    "$@" "$LG" backend --ports 4 --port-file "$dir/ports" >"$dir/backend.out" 2>&1 &
    bpid=$!
    PIDS+=("$bpid")
    for _ in $(seq 100); do [ -s "$dir/ports" ] && break; sleep 0.1; done
    [ -s "$dir/ports" ] || die "backend did not start"
    ports=$(cat "$dir/ports")
    port=$("$LG" free-port)
}

# bench_config PORT PORTS ROUTES [LISTENER_LINES] -> ch-edge-proxy's bench configuration on
# stdout: one listener on PORT, ROUTES routes over the backend PORTS, PROXY v2 out.
bench_config() {
    printf 'listeners:\n  - name: bench\n    address: "127.0.0.1:%s"\n' "$1"
    [ -n "${4:-}" ] && printf '%s\n' "$4"
    printf 'timeouts: {client_hello: 5s, connect: 3s, idle: 1h}\n'
    printf 'limits: {max_connections: 100000}\ndefaults:\n  proxy_protocol: v2\n'
    "$LG" routes --format yaml --routes "$3" --ports "$2"
}

# field LINE KEY -> the value of KEY=value in a client's result line
field() { sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" <<<"$1"; }
