#!/usr/bin/env bash
# TLS termination benchmark: ch-edge-proxy (rustls, ring) vs HAProxy (OpenSSL) terminating the
# same certificate in front of the same plaintext echo backend. Loopback only, ports picked at
# run time, bounded run time. Method: README.md in this directory.
#
# Measured, per proxy, from the proxy process's CPU time (/proc/PID/stat utime + stime):
#   hs    CPU µs per full handshake (no resumption), ECDSA P-256 and RSA 2048 certificates;
#         each connection: TCP connect, full handshake, one byte to the backend and back, close
#   bulk  CPU s per GiB through one terminated connection (bytes counted both ways: the proxy
#         decrypts what the client sends and encrypts what the backend echoes)
# Two comparisons (MODES):
#   pinned  the proxy on core 0 with one thread (ch-edge-proxy: taskset gives tokio one worker;
#           HAProxy nbthread 1); tlsgen and the echo backend on core 1
#   shared  two threads each (HAProxy nbthread 2, ch-edge-proxy one worker per core), unpinned
#
# Usage: benches/tls/run.sh [--proxy-bin PATH] [--quick]
#   --proxy-bin PATH  ch-edge-proxy release binary (default: $CH_EDGE_PROXY, else skipped)
#   --quick           1 repetition, small counts (proves the tooling works; not figures)
# Environment (defaults in brackets):
#   PROXIES [chp haproxy]  MODES [pinned shared]  KEYS [ecdsa rsa]  REPS [3]
#   HS_COUNT [5000]  HS_CONCURRENCY [16]  BULK_MIB [1024] (each way)  BUDGET_SECS [900]
#   TLSGEN  prebuilt tlsgen binary (default: cargo build --release --example tlsgen)
#   KEEP=1  keep the work directory (configs, certificates, logs)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
source "$ROOT/benches/lib.sh"
parse_args "$@"
if [ "$QUICK" = 1 ]; then
    REPS=${REPS:-1}; HS_COUNT=${HS_COUNT:-500}; BULK_MIB=${BULK_MIB:-128}
fi
PROXIES=${PROXIES:-chp haproxy}
MODES=${MODES:-pinned shared}
KEYS=${KEYS:-ecdsa rsa}
REPS=${REPS:-3}
HS_COUNT=${HS_COUNT:-5000}
HS_CONCURRENCY=${HS_CONCURRENCY:-16}
BULK_MIB=${BULK_MIB:-1024}
BUDGET_SECS=${BUDGET_SECS:-900}
CLK_TCK=$(getconf CLK_TCK)
SNI=bench.tls.test

command -v openssl >/dev/null || die "needs openssl (the CLI) to make the certificates"

if [ -z "${TLSGEN:-}" ]; then
    echo "building tlsgen (cargo build --release --example tlsgen)..." >&2
    (cd "$ROOT" && cargo build --quiet --release --example tlsgen)
    TLSGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/tlsgen
fi
TG=$TLSGEN

W=$(mktemp -d /tmp/ch-edge-tls.XXXXXX)
mkdir -p "$W/logs"
T_START=$(date +%s)
start_bounds

# CPU ticks (user + system, all threads) of PID; the command name may hold spaces, so the
# fields are counted after its closing parenthesis (utime and stime are fields 14 and 15).
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

available=()
for p in $PROXIES; do
    case "$p" in
        chp) if [ -n "$PROXY_BIN" ] && [ -x "$PROXY_BIN" ]; then available+=(chp)
             else echo "skipping ch-edge-proxy (no --proxy-bin / CH_EDGE_PROXY)" >&2; fi ;;
        haproxy) if command -v haproxy >/dev/null; then available+=(haproxy)
                 else echo "skipping haproxy (not installed)" >&2; fi ;;
        *) die "unknown proxy $p" ;;
    esac
done
[ ${#available[@]} -gt 0 ] || die "no proxy to benchmark"

# --- certificates, made now: one self-signed leaf per key type for *.tls.test (the client
# does not verify: the server's side is what is measured). HAProxy reads cert + key in one file.
for k in $KEYS; do
    case $k in
        ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
        rsa) newkey=(-newkey rsa:2048) ;;
        *) die "unknown key type $k" ;;
    esac
    openssl req -x509 "${newkey[@]}" -nodes -days 30 -subj "/CN=$SNI" \
        -addext "subjectAltName=DNS:*.tls.test,DNS:tls.test" \
        -keyout "$W/$k.key" -out "$W/$k.crt" 2>/dev/null || die "openssl could not make the $k certificate"
    cat "$W/$k.crt" "$W/$k.key" >"$W/$k.pem"
done

# --- the plaintext echo backend behind both proxies (one per mode, on the load's core)
start_echo() {
    rm -f "$W/echo.port"
    $PIN_LOAD $TG echo --listen 127.0.0.1:0 --port-file "$W/echo.port" >>"$W/logs/echo.log" 2>&1 &
    ECHO_PID=$!
    PIDS+=("$ECHO_PID")
    for i in $(seq 100); do [ -s "$W/echo.port" ] && break; sleep 0.1; done
    [ -s "$W/echo.port" ] || die "echo backend did not start"
    ECHO_PORT=$(cat "$W/echo.port")
}

# gen_NAME DIR KEY -> config in DIR, listener port in DIR/port
gen_chp() {
    local d=$1 k=$2 port admin
    port=$($TG free-port); admin=$($TG free-port)
    # Alone in its directory (the proxy watches the config's directory); JSON access log on,
    # as by default, written to a file elsewhere.
    mkdir -p "$d/chp"
    cat >"$d/chp/config.yaml" <<EOF
listeners:
  - name: bench
    address: "127.0.0.1:$port"
    upstream_port_plain: $ECHO_PORT
admin:
  address: "127.0.0.1:$admin"
timeouts: {client_hello: 5s, connect: 3s, idle: 1h}
tls:
  certificates:
    - cert: $W/$k.crt
      key: $W/$k.key
routes:
  - sni: "*.tls.test"
    upstream: 127.0.0.1
    tls: terminate
EOF
    echo "$port" >"$d/port"
}
gen_haproxy() {
    local d=$1 k=$2 port
    port=$($TG free-port)
    cat >"$d/haproxy.cfg" <<EOF
global
    nbthread $THREADS
    maxconn 4096
    # no "log" line: HAProxy logs nothing (ch-edge-proxy writes its access log)
defaults
    mode tcp
    timeout connect 3s
    timeout client 1h
    timeout server 1h
frontend bench
    bind 127.0.0.1:$port ssl crt $W/$k.pem
    default_backend echo
backend echo
    server s1 127.0.0.1:$ECHO_PORT
EOF
    haproxy -c -q -f "$d/haproxy.cfg" || die "haproxy rejected $d/haproxy.cfg"
    echo "$port" >"$d/port"
}

# start NAME DIR -> PROXY_PID, ready once a handshake through it works
start() {
    local name=$1 d=$2 i
    case $name in
        chp) $PIN_PROXY "$PROXY_BIN" run --config "$d/chp/config.yaml" >>"$W/logs/$(basename "$d").chp.log" 2>&1 & ;;
        haproxy) $PIN_PROXY haproxy -db -f "$d/haproxy.cfg" >>"$W/logs/$(basename "$d").haproxy.log" 2>&1 & ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    for i in $(seq 150); do
        if $TG handshakes --addr "127.0.0.1:$(cat "$d/port")" --sni "probe.tls.test" --count 1 --concurrency 1 >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$PROXY_PID" 2>/dev/null || break
        sleep 0.1
    done
    die "$name did not terminate a probe handshake (logs: $W/logs)"
}

# measure NAME DIR ARGS... -> runs tlsgen ARGS against the proxy; prints its line and the
# proxy's CPU seconds over the run as cpu=
measure() {
    local name=$1 d=$2; shift 2
    local before after out
    before=$(ticks "$PROXY_PID")
    out=$(timeout 300 $PIN_LOAD $TG "$@" --addr "127.0.0.1:$(cat "$d/port")" --sni "$SNI") || {
        echo "FAILED: $name $*" >&2; return 1; }
    after=$(ticks "$PROXY_PID")
    echo "$out cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", t / hz }')"
}

record() { echo "$3" >>"$W/res.$1.$2"; }
median() {
    [ -s "$W/res.$1.$2" ] || { echo "-"; return; }
    sort -g "$W/res.$1.$2" | awk '{v[NR]=$1} END {m=v[int((NR+1)/2)]; if (NR%2==0) m=(v[NR/2]+v[NR/2+1])/2; print m}'
}
COLS=()
for k in $KEYS; do COLS+=("us_hs_$k" "hs_s_$k"); done
COLS+=(s_gib gbit)
row() { printf '%-18s' "$1"; shift; printf ' %13s' "$@"; echo; }
report() {
    local mode name label c vals heads=()
    echo
    echo "Results: median of $REPS run(s); $(nproc) vCPU; handshakes $HS_COUNT@$HS_CONCURRENCY, bulk ${BULK_MIB} MiB each way; elapsed $(( $(date +%s) - T_START ))s; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
    for c in "${COLS[@]}"; do
        case $c in
            us_hs_*) heads+=("CPU_us/hs_${c#us_hs_}") ;;
            hs_s_*) heads+=("hs/s_${c#hs_s_}") ;;
            s_gib) heads+=("CPU_s/GiB") ;;
            gbit) heads+=("Gbit/s") ;;
        esac
    done
    for mode in $MODES; do
        echo
        case $mode in
            pinned) echo "pinned: each proxy on core 0 with one thread; tlsgen and the echo backend on core 1" ;;
            shared) echo "shared: two threads each, nothing pinned" ;;
        esac
        row proxy "${heads[@]}"
        for name in "${available[@]}"; do
            label=$name; [ "$name" = chp ] && label=ch-edge-proxy
            vals=()
            for c in "${COLS[@]}"; do vals+=("$(median "$mode.$name" "$c")"); done
            row "$label" "${vals[@]}"
        done
        if [[ " ${available[*]} " == *" haproxy "* && " ${available[*]} " == *" chp "* ]]; then
            vals=()
            for c in "${COLS[@]}"; do
                vals+=("$(awk -v a="$(median "$mode.chp" "$c")" -v b="$(median "$mode.haproxy" "$c")" \
                    'BEGIN { if (b > 0 && a != "-") printf "%.2f", a / b; else printf "-" }')")
            done
            row "chp/haproxy" "${vals[@]}"
        fi
    done
    echo "(hs = a full handshake with one byte relayed each way; GiB counted both ways through one connection)"
    if [ -s "$W/negotiated" ]; then
        echo "negotiated: $(sort -u "$W/negotiated" | paste -sd';' - | sed 's/;/; /g')"
    fi
}

echo "machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)" >&2
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "proxies: ${available[*]}; haproxy: $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f3); $(openssl version)" >&2

for rep in $(seq "$REPS"); do
  for mode in $MODES; do
    case $mode in
        pinned) THREADS=1; PIN_PROXY="taskset -c 0"; PIN_LOAD="taskset -c 1" ;;
        shared) THREADS=2; PIN_PROXY=""; PIN_LOAD="" ;;
        *) die "unknown mode $mode" ;;
    esac
    start_echo
    # Proxies interleaved per repetition so drifting background load hits all alike.
    for name in "${available[@]}"; do
        for k in $KEYS; do
            d=$W/$mode.$name.$k.$rep
            mkdir -p "$d"
            "gen_$name" "$d" "$k"
            start "$name" "$d"
            if out=$(measure "$name" "$d" handshakes --count "$HS_COUNT" --concurrency "$HS_CONCURRENCY"); then
                echo "[$rep $mode $name $k] $out" >&2
                record "$mode.$name" "us_hs_$k" "$(awk -v c="$(field "$out" cpu)" -v n="$HS_COUNT" 'BEGIN { printf "%.1f", c * 1e6 / n }')"
                record "$mode.$name" "hs_s_$k" "$(awk -v s="$(field "$out" seconds)" -v n="$HS_COUNT" 'BEGIN { printf "%.0f", n / s }')"
                echo "$name $k: $(field "$out" version) $(field "$out" suite) $(field "$out" kx)" >>"$W/negotiated"
            fi
            # Bulk once per proxy and mode: the certificate's key plays no part after the handshake.
            if [ "$k" = "${KEYS%% *}" ] && out=$(measure "$name" "$d" bulk --mib "$BULK_MIB"); then
                echo "[$rep $mode $name bulk] $out" >&2
                bytes=$(field "$out" bytes)
                record "$mode.$name" s_gib "$(awk -v c="$(field "$out" cpu)" -v b="$bytes" 'BEGIN { printf "%.3f", c / (b / 1073741824) }')"
                record "$mode.$name" gbit "$(awk -v s="$(field "$out" seconds)" -v b="$bytes" 'BEGIN { printf "%.2f", b * 8 / s / 1e9 }')"
            fi
            kill -0 "$PROXY_PID" 2>/dev/null || echo "    WARNING: $name exited" >&2
            stop "$PROXY_PID"
        done
    done
    stop "$ECHO_PID"
  done
done
report
