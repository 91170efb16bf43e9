#!/usr/bin/env python3
"""Client compatibility: asyncpg against a PostgreSQL server or the pgclone proxy.

asyncpg always speaks the extended protocol with named prepared statements and binary
formats, and pipelines Bind/Execute in executemany. Connection from PGHOST PGPORT
PGUSER PGPASSWORD PGDATABASE; the role must be able to create temporary tables.
Prints "OK asyncpg_client" and exits 0 when every check passes; otherwise prints
"FAIL asyncpg_client: <check>: <reason>" and exits 1. Only TEMP tables are created,
so it can run concurrently with itself and with psycopg_client.py.
"""
import asyncio
import datetime as dt
import io
import os
import sys
import time
import traceback
import uuid
from decimal import Decimal

import asyncpg

NAME = "asyncpg_client"
SUFFIX = str(os.getpid())
TIMEOUT = float(os.environ.get("CLIENT_TEST_TIMEOUT", "120"))


def eq(actual, expected, what):
    # isinstance, not type(): drivers return subclasses (asyncpg's UUID, IntEnums).
    if actual != expected or not isinstance(actual, type(expected)):
        raise AssertionError(f"{what}: expected {expected!r} ({type(expected).__name__}), "
                             f"got {actual!r} ({type(actual).__name__})")


async def expect_error(exc_type, sqlstate, coro, what):
    try:
        await coro
    except exc_type as e:
        eq(e.sqlstate, sqlstate, f"{what}: SQLSTATE")
        return e
    except Exception as e:
        raise AssertionError(f"{what}: expected {exc_type.__name__} ({sqlstate}), "
                             f"got {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: expected {exc_type.__name__} ({sqlstate}), no error raised")


async def connect():
    return await asyncpg.connect(timeout=10, server_settings={"application_name": f"{NAME}-{SUFFIX}"})


# --- checks ---------------------------------------------------------------------

async def check_types(conn):
    ts = dt.datetime(2024, 2, 29, 18, 29, 58, 123456, tzinfo=dt.timezone.utc)
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    values = [
        ("int2", -32768),
        ("int4", 2147483647),
        ("int8", -9223372036854775808),
        ("text", "héllo wörld ✓ \x01"),
        ("numeric", Decimal("-12345678901234567890.123456789")),
        ("bytea", b"\x00\xff\x00\x01"),
        ("timestamptz", ts),
        ("timestamp", dt.datetime(2000, 1, 1, 0, 0, 0, 1)),
        ("date", dt.date(1970, 1, 1)),
        ("interval", dt.timedelta(days=3, seconds=7, microseconds=5)),
        ("bool", True),
        ("float8", 1.5e-300),
        ("uuid", u),
        ("int4[]", [1, None, -3]),
        ("text[]", ["a", "b,c", None, ""]),
    ]
    placeholders = ", ".join(f"${i + 1}::{t}" for i, (t, _) in enumerate(values))
    row = await conn.fetchrow(f"select {placeholders}", *[v for _, v in values])
    for i, (t, v) in enumerate(values):
        eq(row[i], v, f"round trip {t}")
    # Values produced by the server (no parameters), including jsonb and NULL.
    row = await conn.fetchrow(
        r"""select '{"a": [1, 2.5, {"b": null}], "c": "é"}'::jsonb as j,
                   '\x00ff'::bytea as b, null::int8 as n, 'NaN'::numeric as nan,
                   array[array[1, 2], array[3, 4]]::int4[] as m,
                   '2020-01-01 00:00:00+00'::timestamptz - '2019-12-31 00:00:00+00'::timestamptz as d""")
    eq(row["j"], '{"a": [1, 2.5, {"b": null}], "c": "é"}', "jsonb text as the server normalises it")
    eq(row["b"], b"\x00\xff", "bytea from literal")
    eq(row["n"], None, "null int8")
    if not (isinstance(row["nan"], Decimal) and row["nan"].is_nan()):
        raise AssertionError(f"numeric NaN: got {row['nan']!r}")
    eq(row["m"], [[1, 2], [3, 4]], "two-dimensional int4[]")
    eq(row["d"], dt.timedelta(days=1), "interval from timestamptz difference")
    eq(list(row.keys()), ["j", "b", "n", "nan", "m", "d"], "column names")
    rows = await conn.fetch("select g, g::text as t from generate_series(1, 500) g order by 1")
    eq([tuple(r) for r in rows], [(g, str(g)) for g in range(1, 501)], "500-row fetch")


async def check_prepare(conn):
    stmt = await conn.prepare(f"select $1::int4 * 2 + {SUFFIX} - {SUFFIX}, $2::text || '!'")
    for i in range(50):
        row = await stmt.fetchrow(i, f"s{i}")
        eq(tuple(row), (i * 2, f"s{i}!"), f"prepared statement execution {i}")
    eq([a.name for a in stmt.get_attributes()], ["?column?", "?column?"], "prepared statement attributes")
    n = await conn.fetchval("select count(*) from pg_prepared_statements "
                            "where statement like $1 and from_sql = false",
                            f"%* 2 + {SUFFIX} - {SUFFIX}%")
    eq(n, 1, "the prepared statement exists once on the server")
    # Cursor over a prepared statement (portal fetched in chunks).
    async with conn.transaction():
        total = 0
        async for r in conn.cursor("select g from generate_series(1, 1000) g", prefetch=64):
            total += r["g"]
    eq(total, 500500, "cursor iteration")


async def check_executemany(conn):
    await conn.execute("create temp table many_t (id int4 primary key, name text)")
    await conn.executemany("insert into many_t values ($1, $2)",
                           [(i, f"row {i}") for i in range(1, 201)])
    eq(tuple(await conn.fetchrow("select count(*), sum(id) from many_t")), (200, 20100),
       "executemany inserted rows")
    # A failing row makes the whole batch fail: nothing from it remains.
    await expect_error(asyncpg.UniqueViolationError, "23505",
                       conn.executemany("insert into many_t values ($1, $2)",
                                        [(i, "dup") for i in (1000, 1001, 5, 1002)]),
                       "executemany with a duplicate")
    eq(tuple(await conn.fetchrow("select count(*), sum(id) from many_t")), (200, 20100),
       "failed executemany left nothing")


async def check_copy(conn):
    await conn.execute("create temp table copy_t (id int4, name text, amount numeric, "
                       "data bytea, at timestamptz)")
    base = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    records = [(i,
                f"name {i}\ttab\nnl \\ \"q\"," if i % 7 == 0 else f"name {i}",
                Decimal(i) / Decimal(8),
                bytes([i % 256, 0, 255]) if i % 3 else None,
                base + dt.timedelta(seconds=i * 3601, microseconds=i))
               for i in range(1, 1001)]
    res = await conn.copy_records_to_table("copy_t", records=records)
    eq(res, "COPY 1000", "copy_records_to_table status")
    rows = await conn.fetch("select * from copy_t order by id")
    eq([tuple(r) for r in rows], records, "rows written by copy_records_to_table")

    buf = io.BytesIO()
    res = await conn.copy_from_query("select id, name, amount from copy_t where id <= $1 order by id",
                                     3, output=buf, format="csv")
    eq(res, "COPY 3", "copy_from_query status")
    eq(buf.getvalue().decode(), "1,name 1,0.125\n2,name 2,0.25\n3,name 3,0.375\n", "copy_from_query CSV")

    buf = io.BytesIO()
    res = await conn.copy_from_query("select * from copy_t order by id", output=buf, format="binary")
    eq(res, "COPY 1000", "binary copy_from_query status")
    # Load the binary stream back into a second table and compare.
    await conn.execute("create temp table copy_back (like copy_t)")
    buf.seek(0)
    res = await conn.copy_to_table("copy_back", source=buf, format="binary")
    eq(res, "COPY 1000", "copy_to_table (binary) status")
    diff = await conn.fetchval("select count(*) from ((table copy_t except all table copy_back) "
                               "union all (table copy_back except all table copy_t)) d")
    eq(diff, 0, "binary COPY out and in preserves every row")


async def check_transaction(conn):
    await conn.execute("create temp table tx_t (id int)")
    try:
        async with conn.transaction():
            await conn.execute("insert into tx_t values (1)")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    eq(await conn.fetchval("select count(*) from tx_t"), 0, "rolled-back transaction left nothing")
    async with conn.transaction():
        await conn.execute("insert into tx_t values (2)")
        try:
            async with conn.transaction():  # savepoint
                await conn.execute("insert into tx_t values (3)")
                await conn.execute("select 1/0")
        except asyncpg.DivisionByZeroError:
            pass
        await conn.execute("insert into tx_t values (4)")
    eq(await conn.fetchval("select array_agg(id order by id) from tx_t"), [2, 4],
       "savepoint rollback keeps outer work")
    eq(conn.is_in_transaction(), False, "not in a transaction afterwards")


async def check_errors(conn):
    missing = f"no_such_table_{SUFFIX}"
    e = await expect_error(asyncpg.UndefinedTableError, "42P01",
                           conn.fetch(f'select * from "{missing}"'), "undefined table")
    eq(e.message, f'relation "{missing}" does not exist', "42P01 message")
    await conn.execute("create temp table uniq_t (id int constraint uniq_t_pk primary key)")
    await conn.execute("insert into uniq_t values (1)")
    e = await expect_error(asyncpg.UniqueViolationError, "23505",
                           conn.execute("insert into uniq_t values ($1)", 1), "duplicate key")
    eq(e.constraint_name, "uniq_t_pk", "23505 constraint name")
    eq(e.detail, "Key (id)=(1) already exists.", "23505 detail")
    await expect_error(asyncpg.PostgresSyntaxError, "42601", conn.fetch("selec 1"), "syntax error")
    # Error at Bind time (bad parameter for the type).
    await expect_error(asyncpg.InvalidTextRepresentationError, "22P02",
                       conn.fetchval("select $1::text::int4", "not a number"), "bad int4 text")
    eq(await conn.fetchval("select 'still usable'"), "still usable", "connection usable after errors")


async def check_timeout_cancel(conn):
    start = time.monotonic()
    try:
        await conn.fetchval("select pg_sleep(30)", timeout=0.5)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("pg_sleep(30) with timeout=0.5 returned")
    eq(await conn.fetchval("select 'alive'"), "alive", "connection usable after cancel")
    elapsed = time.monotonic() - start
    if elapsed > 3:
        raise AssertionError(f"timeout + cancel took {elapsed:.1f} s")


async def check_pool():
    pool = await asyncpg.create_pool(min_size=10, max_size=10, timeout=10,
                                     server_settings={"application_name": f"{NAME}-pool-{SUFFIX}"})
    try:
        async def one(i):
            return await pool.fetchrow("select $1::int4 * 3 as v, pg_backend_pid() as pid, "
                                       "pg_sleep(0.02)::text as s", i)
        rows = await asyncio.gather(*(one(i) for i in range(100)))
        eq([r["v"] for r in rows], [i * 3 for i in range(100)], "pool results")
        pids = {r["pid"] for r in rows}
        eq(len(pids), 10, "distinct server sessions used by the pool")
    finally:
        await pool.close()


async def run():
    current = "connect"
    try:
        conn = await connect()
        try:
            checks = [
                ("types", lambda: check_types(conn)),
                ("prepare", lambda: check_prepare(conn)),
                ("executemany", lambda: check_executemany(conn)),
                ("copy", lambda: check_copy(conn)),
                ("transaction", lambda: check_transaction(conn)),
                ("errors", lambda: check_errors(conn)),
                ("timeout_cancel", lambda: check_timeout_cancel(conn)),
                ("pool", check_pool),
            ]
            for current, fn in checks:
                await fn()
                print(f"  ok {current}", flush=True)
        finally:
            await conn.close(timeout=5)
    except Exception as e:
        traceback.print_exc()
        print(f"FAIL {NAME}: {current}: {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"OK {NAME}", flush=True)
    return 0


def main():
    try:
        return asyncio.run(asyncio.wait_for(run(), TIMEOUT))
    except asyncio.TimeoutError:
        print(f"FAIL {NAME}: timed out after {TIMEOUT:.0f} s", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
