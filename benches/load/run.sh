#!/usr/bin/env bash
# Side-by-side load benchmark: ch-edge-proxy vs HAProxy (and nginx stream, if installed, and the
# floor: the cheapest correct proxy, ../shared/tools/floor, if it is there). Loopback only, ports
# picked free at run time, bounded run time. Method and results: benches/load/README.md.
#
# Two comparisons in one run (MODES):
#   pinned  each proxy pinned to core 0 with one thread (ch-edge-proxy: taskset gives tokio one
#           worker; HAProxy nbthread 1; nginx worker_processes 1); load generator and backend
#           pinned to core 1
#   shared  two threads each (HAProxy nbthread 2, nginx 2 workers, ch-edge-proxy's default of one
#           worker per core), nothing pinned (the floor is single-threaded in both)
# ch-edge-proxy runs with its defaults (JSON access log on), its config alone in its own
# directory, its log written to a file elsewhere ("chp_logbeside": the same with its log written
# into the config's directory).
#
# Usage: benches/load/run.sh [--proxy-bin PATH] [--quick]
#   --proxy-bin PATH  ch-edge-proxy release binary (default: $CH_EDGE_PROXY,
#                     else skipped; the run then compares HAProxy and nginx)
#   --quick           1 repetition, small counts (smoke test, ~1 min)
# Environment (defaults in brackets):
#   PROXIES [chp chp_logbeside haproxy floor nginx]  which to run (missing ones are skipped);
#            also "chp_nolog" (ch-edge-proxy with RUST_LOG=info,access=off) and
#            "haproxy_splice" (HAProxy with option splice-request/-response). chp_logbeside runs
#            the conn test only; the floor runs no TLS test.
#   REPS [3]  CONN_COUNT [20000]  CONCURRENCY [32]  ROUTES [1000]
#   STREAM_MIB [2048] (per run, split over the streams)  HOLD_COUNT [5000]
#   DUPLEX_MIB [1024] (each way, one connection, 256 KiB writes)
#   TLS_HOLD_COUNT [2000] (idle terminated TLS connections, ECDSA P-256, TLS 1.3)
#   TESTS [hold conn stream1 stream4 duplex tlshold]
#   MODES [pinned shared]
#   BUDGET_SECS [1800]  hard bound on the whole script
#   PROXY_LOG_DIR [a logs/ directory in the work dir]  where ch-edge-proxy's stdout/stderr go
#   LOADGEN, TLSGEN  prebuilt loadgen / tlsgen binaries (default: cargo build --release)
#   FLOOR  prebuilt floor binary (default: built from $FLOOR_SRC [../shared/tools/floor] into
#          $FLOOR_TARGET [/tmp/ch-edge-floor-target])
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
source "$ROOT/benches/lib.sh"
parse_args "$@"
PROXIES=${PROXIES:-chp chp_logbeside haproxy floor nginx}
if [ "$QUICK" = 1 ]; then
    REPS=${REPS:-1}; CONN_COUNT=${CONN_COUNT:-5000}; STREAM_MIB=${STREAM_MIB:-512}
    HOLD_COUNT=${HOLD_COUNT:-1000}; DUPLEX_MIB=${DUPLEX_MIB:-256}; TLS_HOLD_COUNT=${TLS_HOLD_COUNT:-500}
fi
REPS=${REPS:-3}
CONN_COUNT=${CONN_COUNT:-20000}
CONCURRENCY=${CONCURRENCY:-32}
ROUTES=${ROUTES:-1000}
STREAM_MIB=${STREAM_MIB:-2048}
HOLD_COUNT=${HOLD_COUNT:-5000}
DUPLEX_MIB=${DUPLEX_MIB:-1024}
TLS_HOLD_COUNT=${TLS_HOLD_COUNT:-2000}
BUDGET_SECS=${BUDGET_SECS:-1800}
TESTS=${TESTS:-hold conn stream1 stream4 duplex tlshold}
MODES=${MODES:-pinned shared}
NBACKENDS=4
CLK_TCK=$(getconf CLK_TCK)

# --- fds: every process started from here inherits the raised soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ $((HOLD_COUNT * 2 + 200)) -gt "$NOFILE" ]; then
    HOLD_COUNT=$(((NOFILE - 200) / 2))
    echo "note: ulimit -n is $NOFILE; HOLD_COUNT lowered to $HOLD_COUNT" >&2
fi
if [ "$NOFILE" != unlimited ] && [ $((TLS_HOLD_COUNT * 2 + 200)) -gt "$NOFILE" ]; then
    TLS_HOLD_COUNT=$(((NOFILE - 200) / 2))
    echo "note: ulimit -n is $NOFILE; TLS_HOLD_COUNT lowered to $TLS_HOLD_COUNT" >&2
fi

# --- loadgen
if [ -z "${LOADGEN:-}" ]; then
    echo "building loadgen (cargo build --release --example loadgen)..." >&2
    (cd "$ROOT" && cargo build --quiet --release --example loadgen)
    LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/loadgen
fi
LG=$LOADGEN
if [[ " $TESTS " == *" tlshold "* ]] && [ -z "${TLSGEN:-}" ]; then
    echo "building tlsgen (cargo build --release --example tlsgen)..." >&2
    (cd "$ROOT" && cargo build --quiet --release --example tlsgen)
    TLSGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/tlsgen
fi
TG=${TLSGEN:-}

W=$(mktemp -d /tmp/ch-edge-load.XXXXXX)
PROXY_LOG_DIR=${PROXY_LOG_DIR:-$W/logs}
mkdir -p "$PROXY_LOG_DIR"
T_START=$(date +%s)
available=()
start_bounds

# num LINE KEY -> the value as an integer, 0 if absent
num() { local v; v=$(field "$1" "$2"); echo "${v:-0}"; }

# build_floor -> FLOOR: the floor's binary, built once into a temp target dir (shared/ may be
# read-only); fails when its source is not there.
if [ -z "${FLOOR_SRC:-}" ]; then
    # ../shared next to the main checkout; a worktree under wt/ has it one level further up.
    for FLOOR_SRC in "$ROOT/../shared/tools/floor" "$ROOT/../../shared/tools/floor"; do
        [ -f "$FLOOR_SRC/Cargo.toml" ] && break
    done
fi
build_floor() {
    [ -n "${FLOOR:-}" ] && [ -x "$FLOOR" ] && return 0
    [ -f "$FLOOR_SRC/Cargo.toml" ] || return 1
    echo "building the floor ($FLOOR_SRC)..." >&2
    CARGO_TARGET_DIR=${FLOOR_TARGET:-/tmp/ch-edge-floor-target} \
        cargo build --quiet --release --manifest-path "$FLOOR_SRC/Cargo.toml" || return 1
    FLOOR=${FLOOR_TARGET:-/tmp/ch-edge-floor-target}/release/floor
    [ -x "$FLOOR" ]
}

# --- which proxies can run here
for p in $PROXIES; do
    case "$p" in
        chp|chp_nolog|chp_logbeside) if [ -n "$PROXY_BIN" ] && [ -x "$PROXY_BIN" ]; then available+=("$p")
             else echo "skipping ch-edge-proxy (no --proxy-bin / CH_EDGE_PROXY)" >&2; fi ;;
        haproxy|haproxy_splice) if command -v haproxy >/dev/null; then available+=("$p")
                 else echo "skipping haproxy (not installed)" >&2; fi ;;
        nginx) if command -v nginx >/dev/null && [ -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
                   available+=(nginx)
               else echo "skipping nginx (needs nginx + libnginx-mod-stream)" >&2; fi ;;
        floor) if build_floor; then available+=(floor)
               else echo "skipping the floor (no $FLOOR_SRC, or it did not build)" >&2; fi ;;
        *) die "unknown proxy $p" ;;
    esac
done
[ ${#available[@]} -gt 0 ] || die "no proxy to benchmark"

# --- config generators; $1 = dir, $2 = comma-separated backend ports; $THREADS per mode
gen_chp_nolog() { gen_chp "$@"; }
gen_chp_logbeside() { gen_chp "$@"; }
gen_chp() {
    local d=$1 ports=$2 port admin
    port=$($LG free-port); admin=$($LG free-port)
    # Alone in its directory: the proxy watches the config's directory.
    mkdir -p "$d/chp"
    cat >"$d/chp/config.yaml" <<EOF
listeners:
  - name: bench
    address: "127.0.0.1:$port"
admin:
  address: "127.0.0.1:$admin"
timeouts: {client_hello: 5s, connect: 3s, idle: 1h}
limits: {max_connections: 100000}
defaults:
  proxy_protocol: v2
EOF
    $LG routes --format yaml --routes "$ROUTES" --ports "$ports" >>"$d/chp/config.yaml"
    echo "$port" >"$d/chp.port"
    echo "$port" >"$d/chp_nolog.port"
    echo "$port" >"$d/chp_logbeside.port"
}

gen_haproxy() {
    local d=$1 ports=$2 name=${3:-haproxy} port j=0 p splice=""
    # splice-auto barely engages on these flows; force splice both ways.
    [ "$name" = haproxy_splice ] && splice="option splice-request
    option splice-response"
    port=$($LG free-port)
    $LG routes --format haproxy --routes "$ROUTES" --ports "$ports" >"$d/sni.map"
    cat >"$d/$name.cfg" <<EOF
global
    nbthread $THREADS
    maxconn $((HOLD_COUNT + 1000))
    # no "log" line: HAProxy logs nothing (see README)
defaults
    mode tcp
    maxconn $((HOLD_COUNT + 1000))
    timeout connect 3s
    timeout client 1h
    timeout server 1h
    $splice
frontend bench
    bind 127.0.0.1:$port
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend %[req.ssl_sni,lower,map($d/sni.map)]
EOF
    for p in ${ports//,/ }; do
        printf 'backend b%d\n    server s1 127.0.0.1:%s send-proxy-v2\n' "$j" "$p" >>"$d/$name.cfg"
        j=$((j + 1))
    done
    echo "$port" >"$d/$name.port"
    haproxy -c -q -f "$d/$name.cfg" || die "haproxy rejected $d/$name.cfg"
}
gen_haproxy_splice() { gen_haproxy "$1" "$2" haproxy_splice; }

# The floor has no routing table: one upstream (its backend listens on one port, so every
# route's backend is that one and the backend's routing check holds).
gen_floor() {
    local d=$1 ports=$2
    $LG free-port >"$d/floor.port"
    echo "${ports%%,*}" >"$d/floor.upstream"
}

gen_nginx() {
    local d=$1 ports=$2 port j=0 p
    port=$($LG free-port)
    mkdir -p "$d/nginx"
    $LG routes --format nginx --routes "$ROUTES" --ports "$ports" >"$d/nginx/sni.map"
    {
        cat <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
worker_processes $THREADS;
worker_rlimit_nofile $((HOLD_COUNT * 2 + 1000));
pid $d/nginx/nginx.pid;
error_log stderr error;
events { worker_connections $((HOLD_COUNT * 2 + 500)); }
stream {
    map_hash_bucket_size 128;
    map_hash_max_size 8192;
    map \$ssl_preread_server_name \$be { include $d/nginx/sni.map; }
EOF
        for p in ${ports//,/ }; do
            printf '    upstream b%d { server 127.0.0.1:%s; }\n' "$j" "$p"
            j=$((j + 1))
        done
        cat <<EOF
    server {
        listen 127.0.0.1:$port;
        ssl_preread on;
        preread_timeout 5s;
        proxy_connect_timeout 3s;
        proxy_timeout 1h;
        proxy_protocol on;
        proxy_half_close on;
        proxy_pass \$be;
    }
}
EOF
    } >"$d/nginx/nginx.conf"
    echo "$port" >"$d/nginx.port"
    nginx -q -t -p "$d/nginx" -e stderr -c "$d/nginx/nginx.conf" 2>"$d/nginx.check" \
        || { cat "$d/nginx.check" >&2; die "nginx rejected its config"; }
}

# start_proxy NAME DIR -> sets PROXY_PID and MEASURE_PIDS (comma-separated)
start_proxy() {
    local name=$1 d=$2 i kids log
    log=$PROXY_LOG_DIR/$(basename "$d").$name.log
    case "$name" in
        chp) $PIN_PROXY "$PROXY_BIN" run --config "$d/chp/config.yaml" >>"$log" 2>&1 & ;;
        # The access log is the tracing target "access" (src/surface/access_log.rs).
        chp_nolog) RUST_LOG=info,access=off $PIN_PROXY "$PROXY_BIN" run --config "$d/chp/config.yaml" >>"$log" 2>&1 & ;;
        # The log file next to the config: every line written is an event in the watched directory.
        chp_logbeside) $PIN_PROXY "$PROXY_BIN" run --config "$d/chp/config.yaml" >>"$d/chp/proxy.log" 2>&1 & ;;
        haproxy*) $PIN_PROXY haproxy -db -f "$d/$name.cfg" >>"$d/$name.err" 2>&1 & ;;
        nginx) $PIN_PROXY nginx -p "$d/nginx" -e stderr -c "$d/nginx/nginx.conf" >>"$d/nginx.err" 2>&1 & ;;
        floor) $PIN_PROXY "$FLOOR" --mode epoll --listen "127.0.0.1:$(cat "$d/floor.port")" \
                   --upstream "127.0.0.1:$(cat "$d/floor.upstream")" >>"$d/floor.err" 2>&1 & ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if ! $LG probe --target "127.0.0.1:$(cat "$d/$name.port")" --timeout-secs 15; then
        [[ "$name" = chp* ]] && "$PROXY_BIN" check --config "$d/chp/config.yaml" >&2 || true
        die "$name did not route a probe connection"
    fi
    MEASURE_PIDS=$PROXY_PID
    if [ "$name" = nginx ]; then
        # The master only supervises; the workers do the proxying. Sum all.
        for i in $(seq 50); do
            kids=$(pgrep -P "$PROXY_PID" | paste -sd, -)
            [ "$(tr ',' '\n' <<<"$kids" | grep -c .)" -ge 2 ] && break
            sleep 0.1
        done
        MEASURE_PIDS=$PROXY_PID,$kids
    fi
}

# Results are keyed by mode and proxy: record MODE.NAME KEY VALUE.
record() { echo "$3" >>"$W/res.$1.$2"; }
median() {
    [ -s "$W/res.$1.$2" ] || { echo "-"; return; }
    sort -g "$W/res.$1.$2" | awk '{v[NR]=$1} END {m=v[int((NR+1)/2)]; if (NR%2==0) m=(v[NR/2]+v[NR/2+1])/2; print m}'
}

sum() { [ -s "$W/res.$1.$2" ] && awk '{s+=$1} END {print s}' "$W/res.$1.$2" || echo 0; }
COLS=(us_conn usr_conn sys_conn conn_s p50_us p99_us cs_conn s_gib1 gbit1 s_gib4 gbit4 s_gibd gbitd kib_idle kib_tls)
HEADS=(CPU_us/conn user_us kernel_us conn/s setup_p50 setup_p99 ctxsw/conn CPU_s/GiB*1 Gbit/s*1 CPU_s/GiB*4 Gbit/s*4
       CPU_s/GiB*dup Gbit/s*dup KiB/idle KiB/idle_tls)
row() { printf '%-22s' "$1"; shift; printf ' %11s' "$@"; echo; }
# ratio_row LABEL MODE A B: the medians of proxy A over proxy B, column by column
ratio_row() {
    local c vals=()
    for c in "${COLS[@]}"; do
        vals+=("$(awk -v a="$(median "$2.$3" "$c")" -v b="$(median "$2.$4" "$c")" \
            'BEGIN { if (b > 0 && a != "-") printf "%.2f", a / b; else printf "-" }')")
    done
    row "$1" "${vals[@]}" ""
}
has() { [[ " ${available[*]} " == *" $1 "* ]]; }
report() {
    local mode name label errs c vals
    echo
    echo "Results: median of $REPS run(s); $(nproc) vCPU; $ROUTES routes; elapsed $(( $(date +%s) - T_START ))s; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
    for mode in $MODES; do
        echo
        case $mode in
            pinned) echo "pinned: each proxy on core 0 with one thread; load generator and backend on core 1" ;;
            shared) echo "shared: two threads each (the floor: one), nothing pinned" ;;
        esac
        row proxy "${HEADS[@]}" errors
        for name in "${available[@]}"; do
            label=$name; [ "$name" = chp ] && label=ch-edge-proxy
            errs=$(( $(sum "$mode.$name" errors) + $(sum "$mode.$name" failed) + $(sum "$mode.$name" backend_anomalies) ))
            vals=()
            for c in "${COLS[@]}"; do vals+=("$(median "$mode.$name" "$c")"); done
            row "$label" "${vals[@]}" "$errs"
        done
        for name in chp chp_nolog chp_logbeside; do
            has "$name" || continue
            has haproxy && ratio_row "$name/haproxy" "$mode" "$name" haproxy
            has floor && ratio_row "$name/floor" "$mode" "$name" floor
        done
        has floor && has haproxy && ratio_row "floor/haproxy" "$mode" floor haproxy
        has chp && has chp_logbeside && ratio_row "chp_logbeside/chp" "$mode" chp_logbeside chp
    done
    echo "(user_us / kernel_us: CPU_us/conn split into user space and kernel (utime, stime);"
    echo " setup = connect() until the backend's first byte is back, µs; ctxsw = the proxy's voluntary +"
    echo " involuntary context switches (all threads) per connection; *1 / *4: one stream / four parallel"
    echo " streams; *dup: one connection echoed, ${DUPLEX_MIB} MiB each way at once, GiB counted both ways;"
    echo " KiB/idle_tls: per idle terminated TLS connection (ECDSA P-256, TLS 1.3); errors = client"
    echo " errors + failed runs + backend anomalies)"
}

# runs NAME TEST: whether the proxy takes part in the test (the log-beside case is about the
# per-connection cost; the TLS test compares the two proxies that terminate TLS)
runs() {
    case "$1:$2" in
        chp_logbeside:conn) return 0 ;;
        chp_logbeside:*) return 1 ;;
        chp:tlshold|haproxy:tlshold) [ -n "$TG" ] ;;
        *:tlshold) return 1 ;;
        *) return 0 ;;
    esac
}

# --- idle terminated TLS (tlshold): both proxies terminate the same ECDSA P-256 certificate in
# front of a plaintext echo backend (tlsgen echo); TLS 1.3 is what both negotiate.
TLS_SNI=bench.tls.test
tls_cert() {
    [ -s "$W/tls.pem" ] && return 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj "/CN=$TLS_SNI" -addext "subjectAltName=DNS:*.tls.test,DNS:tls.test" \
        -keyout "$W/tls.key" -out "$W/tls.crt" 2>/dev/null || die "openssl could not make a certificate"
    cat "$W/tls.crt" "$W/tls.key" >"$W/tls.pem"
}
# start_tls NAME DIR -> PROXY_PID, ECHO_PID, TLS_PORT: the echo backend and the proxy in front of it
start_tls() {
    local name=$1 d=$2/tls i admin log
    mkdir -p "$d"
    tls_cert
    $PIN_LOAD $TG echo --listen 127.0.0.1:0 --port-file "$d/echo.port" >"$d/echo.log" 2>&1 &
    ECHO_PID=$!
    PIDS+=("$ECHO_PID")
    for i in $(seq 100); do [ -s "$d/echo.port" ] && break; sleep 0.1; done
    [ -s "$d/echo.port" ] || die "echo backend did not start"
    TLS_PORT=$($LG free-port)
    log=$PROXY_LOG_DIR/$(basename "$2").tls.$name.log
    case $name in
        chp)
            admin=$($LG free-port)
            mkdir -p "$d/chp"
            cat >"$d/chp/config.yaml" <<EOF
listeners:
  - name: bench
    address: "127.0.0.1:$TLS_PORT"
    upstream_port_plain: $(cat "$d/echo.port")
admin:
  address: "127.0.0.1:$admin"
timeouts: {client_hello: 5s, connect: 3s, idle: 1h}
limits: {max_connections: 100000}
tls:
  certificates:
    - cert: $W/tls.crt
      key: $W/tls.key
routes:
  - sni: "*.tls.test"
    upstream: 127.0.0.1
    tls: terminate
EOF
            $PIN_PROXY "$PROXY_BIN" run --config "$d/chp/config.yaml" >>"$log" 2>&1 & ;;
        haproxy)
            cat >"$d/haproxy.cfg" <<EOF
global
    nbthread $THREADS
    maxconn $((TLS_HOLD_COUNT + 1000))
defaults
    mode tcp
    maxconn $((TLS_HOLD_COUNT + 1000))
    timeout connect 3s
    timeout client 1h
    timeout server 1h
frontend bench
    bind 127.0.0.1:$TLS_PORT ssl crt $W/tls.pem
    default_backend echo
backend echo
    server s1 127.0.0.1:$(cat "$d/echo.port")
EOF
            $PIN_PROXY haproxy -db -f "$d/haproxy.cfg" >>"$log" 2>&1 & ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    for i in $(seq 150); do
        $TG handshakes --addr "127.0.0.1:$TLS_PORT" --sni "probe.tls.test" --count 1 --concurrency 1 \
            >/dev/null 2>&1 && return 0
        kill -0 "$PROXY_PID" 2>/dev/null || break
        sleep 0.1
    done
    die "$name did not terminate a probe handshake (log: $log)"
}

echo "machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)" >&2
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "proxies: ${available[*]}; tests: $TESTS; reps=$REPS conns=$CONN_COUNT@$CONCURRENCY routes=$ROUTES stream=${STREAM_MIB}MiB duplex=${DUPLEX_MIB}MiB hold=$HOLD_COUNT tls_hold=$TLS_HOLD_COUNT" >&2

for rep in $(seq "$REPS"); do
  for mode in $MODES; do
    case $mode in
        pinned) THREADS=1; PIN_PROXY="taskset -c 0"; PIN_LOAD="taskset -c 1" ;;
        shared) THREADS=2; PIN_PROXY=""; PIN_LOAD="" ;;
        *) die "unknown mode $mode" ;;
    esac
    # Proxies interleaved per repetition so drifting background load hits all alike.
    for name in "${available[@]}"; do
        d=$W/$mode.$name.$rep
        mkdir -p "$d"
        nb=$NBACKENDS; [ "$name" = floor ] && nb=1
        $PIN_LOAD $LG backend --ports "$nb" --port-file "$d/ports" >"$d/backend.out" 2>"$d/backend.err" &
        bpid=$!
        PIDS+=("$bpid")
        for i in $(seq 100); do [ -s "$d/ports" ] && break; sleep 0.1; done
        [ -s "$d/ports" ] || die "backend did not start"
        "gen_$name" "$d" "$(cat "$d/ports")"
        target=127.0.0.1:$(cat "$d/$name.port")

        for t in $TESTS; do
            runs "$name" "$t" || continue
            ECHO_PID=
            if [ "$t" = tlshold ]; then
                start_tls "$name" "$d"
                client=($TG hold --addr "127.0.0.1:$TLS_PORT" --sni "$TLS_SNI" --count "$TLS_HOLD_COUNT"
                        --pids "$PROXY_PID" --deadline-secs 120)
            else
                start_proxy "$name" "$d"
                common=(--target "$target" --pids "$MEASURE_PIDS" --clk-tck "$CLK_TCK" --deadline-secs 120)
                case $t in
                    hold) args=(hold --count "$HOLD_COUNT" --routes "$ROUTES") ;;
                    conn) args=(conn --count "$CONN_COUNT" --concurrency "$CONCURRENCY" --routes "$ROUTES") ;;
                    stream1) args=(stream --streams 1 --total-mib "$STREAM_MIB") ;;
                    stream4) args=(stream --streams 4 --total-mib "$STREAM_MIB") ;;
                    duplex) args=(duplex --mib "$DUPLEX_MIB") ;;
                    *) die "unknown test $t" ;;
                esac
                client=($LG "${args[@]}" "${common[@]}")
            fi
            # In the background so that a budget overrun (trap) interrupts `wait`.
            $PIN_LOAD "${client[@]}" >"$d/$t.out" 2>"$d/$t.err" &
            lpid=$!
            PIDS+=("$lpid")
            ok=0; wait "$lpid" && ok=1
            untrack "$lpid"
            out=$(grep '^RESULT' "$d/$t.out" || true)
            if [ "$ok" = 1 ] && [ -n "$out" ]; then
                echo "[$rep $mode $name $t] ${out#RESULT }" >&2
            else
                echo "[$rep $mode $name $t] FAILED: $(tail -n 3 "$d/$t.err" | tr '\n' ' ')" >&2
                record "$mode.$name" failed 1
                stop "$PROXY_PID"
                [ -n "$ECHO_PID" ] && stop "$ECHO_PID"
                continue
            fi
            [ -s "$d/$t.err" ] && echo "    client stderr: $(head -n 3 "$d/$t.err" | tr '\n' ' ')" >&2
            record "$mode.$name" errors "$(field "$out" errors)"
            case $t in
                hold)
                    record "$mode.$name" kib_idle "$(field "$out" kib_per_conn)"
                    record "$mode.$name" errors "$(field "$out" closed_early)" ;;
                conn)
                    record "$mode.$name" us_conn "$(field "$out" cpu_us_per_conn)"
                    record "$mode.$name" usr_conn "$(field "$out" user_us_per_conn)"
                    record "$mode.$name" sys_conn "$(field "$out" sys_us_per_conn)"
                    record "$mode.$name" conn_s "$(field "$out" conn_per_s)"
                    record "$mode.$name" p50_us "$(field "$out" setup_p50_us)"
                    record "$mode.$name" p99_us "$(field "$out" setup_p99_us)"
                    record "$mode.$name" cs_conn "$(field "$out" ctxsw_per_conn)" ;;
                duplex)
                    record "$mode.$name" s_gibd "$(field "$out" cpu_s_per_gib)"
                    record "$mode.$name" gbitd "$(field "$out" gbit_s)" ;;
                tlshold)
                    record "$mode.$name" kib_tls "$(field "$out" kib_per_conn)"
                    record "$mode.$name" errors "$(field "$out" closed_early)" ;;
                stream*)
                    n=${t#stream}
                    record "$mode.$name" s_gib$n "$(field "$out" cpu_s_per_gib)"
                    record "$mode.$name" gbit$n "$(field "$out" gbit_s)" ;;
            esac
            if ! kill -0 "$PROXY_PID" 2>/dev/null; then
                echo "    WARNING: $name exited during $t" >&2
                record "$mode.$name" failed 1
            fi
            stop "$PROXY_PID"
            [ -n "$ECHO_PID" ] && stop "$ECHO_PID"
        done

        stop "$bpid"
        b=$(grep '^BACKEND' "$d/backend.out" || true)
        echo "[$rep $mode $name backend] ${b#BACKEND }" >&2
        # Upstream side must see PROXY v2 (v1 for nginx, which cannot send v2),
        # every connection routed to the right backend port, no garbage.
        want=pp_v2; [ "$name" = nginx ] && want=pp_v1
        bad=$(( $(num "$b" misrouted) + $(num "$b" bad_input) + $(num "$b" pp_none) \
              + $(num "$b" pp_v2_not_proxy_cmd) ))
        [ -n "$b" ] && [ "$(num "$b" "$want")" = "$(num "$b" conns)" ] || bad=$((bad + 1))
        record "$mode.$name" backend_anomalies "$bad"
    done
  done
done
report
