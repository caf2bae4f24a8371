#!/usr/bin/env bash
# A TLS backend for the Quick start: openssl's test server (`s_server -www`, which answers any
# HTTP request with a status page) on ADDRESS:PORT (default 127.0.0.1:19440, where the example
# config's routes point; 0.0.0.0 for a proxy in a container), with a self-signed certificate for
# demo.ch.example.com and *.ch.example.com made on the first run in DIR (default
# target/demo-backend). Needs the openssl command.
#   examples/demo-backend.sh [PORT] [DIR] [ADDRESS]
set -euo pipefail
port=${1:-19440}
dir=${2:-target/demo-backend}
address=${3:-127.0.0.1}
mkdir -p "$dir"
if [ ! -s "$dir/demo.crt" ] || [ ! -s "$dir/demo.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=demo.ch.example.com \
    -addext "subjectAltName=DNS:demo.ch.example.com,DNS:*.ch.example.com" \
    -keyout "$dir/demo.key" -out "$dir/demo.crt" 2>/dev/null
fi
echo "demo backend: TLS on $address:$port, certificate $dir/demo.crt (Ctrl-C stops it)"
exec openssl s_server -quiet -www -accept "$address:$port" -cert "$dir/demo.crt" -key "$dir/demo.key"
