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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("client", choices=["psycopg", "asyncpg"])
    p.add_argument("--host", required=True, help="SNI and certificate name")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--negotiation", choices=["postgres", "direct"], default="postgres")
    p.add_argument("--sslmode", default="verify-full")
    args = p.parse_args()
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
