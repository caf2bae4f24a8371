#!/usr/bin/env python3
"""PostgreSQL clients for the end-to-end suite (tests/postgres_e2e.rs).

Connects with psycopg (the binary wheel's libpq) or asyncpg to a host name that is only the
SNI (and the name the certificate is checked for): every name under .test resolves to
127.0.0.1 here. Prints one JSON object: what the server said about itself
({"ok": true, "port", "version_num", "server_ssl", "alpn"}), or the error the client reports
({"ok": false, "error", "sqlstate"}: asyncpg reports the SQLSTATE of an ErrorResponse). Exit status 0 either way: the test judges.
"""
import argparse
import asyncio
import json
import socket

QUERY = (
    "SELECT current_setting('port')::int, current_setting('server_version_num')::int, "
    "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)"
)

_getaddrinfo = socket.getaddrinfo


def loopback_names(host, *args, **kwargs):
    """No resolver in the tests: a .test name is the loopback proxy or server."""
    if isinstance(host, str) and host.endswith(".test"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = loopback_names


def answer(row, alpn):
    port, version_num, server_ssl = row
    return {"ok": True, "port": port, "version_num": version_num, "server_ssl": server_ssl, "alpn": alpn}


def libpq_alpn(pgconn):
    """The ALPN protocol libpq negotiated: PQsslAttribute(conn, "alpn"), which psycopg does
    not wrap, called on the wheel's own libpq."""
    import ctypes
    import glob
    import os

    import psycopg_binary

    libs = os.path.join(os.path.dirname(psycopg_binary.__file__), os.pardir, "psycopg_binary.libs")
    libpq = ctypes.CDLL(glob.glob(os.path.join(libs, "libpq-*.so*"))[0])
    libpq.PQsslAttribute.restype = ctypes.c_char_p
    libpq.PQsslAttribute.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    alpn = libpq.PQsslAttribute(pgconn.pgconn_ptr, b"alpn")
    return alpn.decode() if alpn else None


def with_psycopg(args):
    import psycopg

    params = dict(
        host=args.host,
        hostaddr="127.0.0.1",
        port=args.port,
        user="postgres",
        dbname="postgres",
        sslmode=args.sslmode,
        connect_timeout=20,
    )
    if args.sslmode != "disable":
        params.update(sslrootcert=args.ca, sslnegotiation=args.negotiation)
    with psycopg.connect(**params) as conn:
        row = conn.execute(QUERY).fetchone()
        alpn = libpq_alpn(conn.pgconn) if conn.pgconn.ssl_in_use else None
        return answer(row, alpn)


async def with_asyncpg(args):
    import asyncpg

    dsn = f"postgresql://postgres@{args.host}:{args.port}/postgres?sslmode={args.sslmode}"
    if args.sslmode != "disable":
        dsn += f"&sslrootcert={args.ca}"
    conn = await asyncpg.connect(
        dsn, direct_tls=args.negotiation == "direct", timeout=20
    )
    try:
        row = await conn.fetchrow(QUERY)
        ssl_object = conn._transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object else None
        return answer(tuple(row), alpn)
    finally:
        await conn.close()


async def asyncpg_sessions(args):
    """`--sessions` asyncpg connections, `--parallel` at a time, over `--targets`
    (host/negotiation, in turn), each asking who answered and echoing its own number. Prints
    the ports each target reached and the sessions that failed or got another's answer."""
    import asyncpg

    targets = [t.split("/") for t in args.targets.split(",")]
    gate = asyncio.Semaphore(args.parallel)
    ports = {f"{h}/{n}": set() for h, n in targets}
    failures = []

    async def session(i):
        host, negotiation = targets[i % len(targets)]
        dsn = f"postgresql://postgres@{host}:{args.port}/postgres?sslmode=verify-full&sslrootcert={args.ca}"
        async with gate:
            try:
                conn = await asyncpg.connect(dsn, direct_tls=negotiation == "direct", timeout=20)
                try:
                    port = await conn.fetchval("SELECT current_setting('port')::int")
                    echo = await conn.fetchval("SELECT $1::int", i)
                finally:
                    await conn.close()
            except Exception as e:  # noqa: BLE001 - collected and reported
                failures.append(f"{i} {host}/{negotiation}: {type(e).__name__}: {e}")
                return
        if echo != i:
            failures.append(f"{i}: echoed {echo}")
        ports[f"{host}/{negotiation}"].add(port)

    await asyncio.gather(*(session(i) for i in range(args.sessions)))
    return {
        "ok": not failures,
        "ports": {k: sorted(v) for k, v in ports.items()},
        "failures": failures[:5],
        "failed": len(failures),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("client", choices=["psycopg", "asyncpg", "asyncpg-sessions"])
    p.add_argument("--host", help="SNI and certificate name")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--negotiation", choices=["postgres", "direct"], default="postgres")
    p.add_argument("--sslmode", default="verify-full")
    p.add_argument("--sessions", type=int, help="asyncpg-sessions: how many")
    p.add_argument("--parallel", type=int, help="asyncpg-sessions: how many at a time")
    p.add_argument("--targets", help="asyncpg-sessions: host/negotiation,...")
    args = p.parse_args()
    if args.client == "asyncpg-sessions":
        print(json.dumps(asyncio.run(asyncpg_sessions(args))), flush=True)
        return
    try:
        if args.client == "psycopg":
            result = with_psycopg(args)
        else:
            result = asyncio.run(with_asyncpg(args))
    except Exception as e:  # noqa: BLE001 - the test asserts on what the client reports
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "sqlstate": getattr(e, "sqlstate", None)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
