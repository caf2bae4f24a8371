#!/usr/bin/env python3
"""ClickHouse native-protocol client for the end-to-end suite (tests/e2e.rs).

Speaks TLS with an SNI of our choice through the NLB stand-in and the proxy,
using clickhouse-driver. Prints one JSON object per result line on stdout.
Any unexpected error propagates (traceback, exit code 1): the suite fails loudly.
"""
import argparse
import json
import socket
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

from clickhouse_driver import Client


def emit(obj):
    print(json.dumps(obj), flush=True)


def bind_source(source):
    """Every TCP connect from here on leaves from `source` (an allowlist client
    on loopback); clickhouse-driver has no option for a source address."""
    original = socket.socket.connect

    def connect(self, address):
        if self.family == socket.AF_INET:
            self.bind((source, 0))
        return original(self, address)

    socket.socket.connect = connect


def client(args, sni=None):
    tls = {"verify": False} if args.ca is None else {"verify": True, "ca_certs": args.ca}
    return Client(
        args.host,
        port=args.port,
        secure=True,
        server_hostname=sni or args.sni,
        connect_timeout=20,
        send_receive_timeout=120,
        **tls,
    )


def whoami(c):
    """The server version and the address ClickHouse saw for this connection:
    each route's upstream is a hop with its own source address, so this tells
    which route the proxy picked."""
    marker = "e2e-" + uuid.uuid4().hex
    rows = c.execute(
        f"SELECT version(), address FROM system.processes WHERE query LIKE '%{marker}%'"
    )
    if len(rows) != 1:
        raise SystemExit(f"expected our own query in system.processes, got {rows!r}")
    return {"version": rows[0][0], "server_saw": rows[0][1]}


def cmd_whoami(args):
    c = client(args)
    try:
        emit(whoami(c))
    finally:
        c.disconnect()


def cmd_refused(args):
    """Expects the handshake to fail; prints the error the client reports."""
    c = client(args)
    try:
        c.execute("SELECT 1")
    except Exception as e:  # noqa: BLE001 - we report whatever the client saw
        emit({"error": f"{type(e).__name__}: {e}"})
        return
    finally:
        c.disconnect()
    raise SystemExit("connection was expected to be refused but the query succeeded")


def cmd_stream(args):
    """Streams `SELECT number ... LIMIT n` row by row and sums client-side.
    With --pause, stops after the first block until a line arrives on stdin,
    so the test can reload or signal the proxy while the query is mid-stream."""
    c = client(args)
    total = 0
    count = 0
    paused = not args.pause
    rows = c.execute_iter(
        f"SELECT number FROM system.numbers LIMIT {args.rows}",
        settings={"max_block_size": 65536},
    )
    for (number,) in rows:
        total += number
        count += 1
        if not paused:
            paused = True
            emit({"event": "streaming"})
            if sys.stdin.readline() == "":
                raise SystemExit("stdin closed while paused")
    c.disconnect()
    emit({"count": count, "sum": total})


def one_session(args, i):
    c = client(args)
    try:
        who = whoami(c)
        rows = c.execute(f"SELECT toUInt64({i}), sum(number) FROM numbers({i} + 1)")
        return {"i": i, "echo": rows[0][0], "sum": rows[0][1], **who}
    finally:
        c.disconnect()


def cmd_sessions(args):
    """`--sessions` independent connections, `--parallel` at a time; reports
    the sessions whose answers are wrong (or raised)."""
    failures = []
    ok = 0
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [pool.submit(one_session, args, i) for i in range(args.sessions)]
        for f in futures:
            try:
                r = f.result()
            except Exception as e:  # noqa: BLE001 - collected and reported as failures
                failures.append(f"{type(e).__name__}: {e}")
                continue
            i = r["i"]
            if r["echo"] == i and r["sum"] == i * (i + 1) // 2 and r["server_saw"] == args.expect_hop:
                ok += 1
            else:
                failures.append(r)
    emit({"ok": ok, "failures": failures[:5], "failed": len(failures)})


def cmd_exec(args):
    """Runs one statement; prints its rows."""
    c = client(args)
    try:
        emit({"rows": c.execute(args.query)})
    finally:
        c.disconnect()


def marker(args, sni):
    """Which server a new connection with this SNI reached: its `marker` table says."""
    c = client(args, sni)
    try:
        return c.execute("SELECT name FROM default.marker")[0][0]
    finally:
        c.disconnect()


def cmd_markers(args):
    """For each tag, `--repeat` new connections with SNI `<tag>.sticky.<sni>` (the name
    clickhouse-driver's `server_hostname` sends), then `--plain` connections with the SNI
    itself; prints the marker each one read."""
    tags = {}
    for tag in args.tags.split(","):
        tags[tag] = [marker(args, f"{tag}.sticky.{args.sni}") for _ in range(args.repeat)]
    plain = [marker(args, args.sni) for _ in range(args.plain)]
    emit({"tags": tags, "plain": plain})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--ca", help="verify the server against this CA (default: no verification)")
    p.add_argument("--source", help="source address to connect from")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("whoami")
    sub.add_parser("refused")
    s = sub.add_parser("stream")
    s.add_argument("--rows", type=int, required=True)
    s.add_argument("--pause", action="store_true")
    s = sub.add_parser("sessions")
    s.add_argument("--sessions", type=int, required=True)
    s.add_argument("--parallel", type=int, required=True)
    s.add_argument("--expect-hop", required=True)
    s = sub.add_parser("exec")
    s.add_argument("--query", required=True)
    s = sub.add_parser("markers")
    s.add_argument("--tags", required=True)
    s.add_argument("--repeat", type=int, required=True)
    s.add_argument("--plain", type=int, required=True)
    args = p.parse_args()
    if args.source:
        bind_source(args.source)
    {
        "whoami": cmd_whoami,
        "refused": cmd_refused,
        "stream": cmd_stream,
        "sessions": cmd_sessions,
        "exec": cmd_exec,
        "markers": cmd_markers,
    }[args.cmd](args)


if __name__ == "__main__":
    main()
