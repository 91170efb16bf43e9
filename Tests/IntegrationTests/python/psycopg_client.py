#!/usr/bin/env python3
"""Client compatibility: psycopg 3 against a PostgreSQL server or the pgclone proxy.

Connection from PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE. The role must be able to
create temporary tables. Prints "OK psycopg_client" and exits 0 when every check
passes; otherwise prints "FAIL psycopg_client: <check>: <reason>" and exits 1.
Safe to run concurrently with itself and with asyncpg_client.py on one database:
it only creates TEMP tables and pid-suffixed LISTEN channels.
"""
import datetime as dt
import os
import sys
import threading
import time
import traceback
from decimal import Decimal

import psycopg
from psycopg import errors, sql

NAME = "psycopg_client"
SUFFIX = str(os.getpid())
WATCHDOG_SECONDS = float(os.environ.get("CLIENT_TEST_TIMEOUT", "120"))


def eq(actual, expected, what):
    # isinstance, not type(): drivers return subclasses (asyncpg's UUID, IntEnums).
    if actual != expected or not isinstance(actual, type(expected)):
        raise AssertionError(f"{what}: expected {expected!r} ({type(expected).__name__}), "
                             f"got {actual!r} ({type(actual).__name__})")


def expect_error(exc_type, sqlstate, fn, what):
    try:
        fn()
    except exc_type as e:
        eq(e.sqlstate, sqlstate, f"{what}: SQLSTATE")
        return e
    except Exception as e:  # wrong error class
        raise AssertionError(f"{what}: expected {exc_type.__name__} ({sqlstate}), "
                             f"got {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: expected {exc_type.__name__} ({sqlstate}), no error raised")


def connect(**kw):
    return psycopg.connect(connect_timeout=10, application_name=f"{NAME}-{SUFFIX}", **kw)


# --- checks ---------------------------------------------------------------------

def check_simple_query(conn):
    # No parameters, text results: psycopg sends a simple Query message.
    cur = conn.execute("select 1 as a, 'two'::text as b, null::int as c")
    eq(cur.fetchall(), [(1, "two", None)], "single statement")
    eq([d.name for d in cur.description], ["a", "b", "c"], "column names")
    # Several statements in one Query: one result set each.
    cur = conn.cursor()
    cur.execute("select 1 as a; select 'x' as b, 2 as c; select generate_series(1, 3)")
    eq(cur.fetchall(), [(1,)], "multi-statement result 1")
    eq(cur.nextset(), True, "multi-statement has result 2")
    eq(cur.fetchall(), [("x", 2)], "multi-statement result 2")
    eq(cur.nextset(), True, "multi-statement has result 3")
    eq(cur.fetchall(), [(1,), (2,), (3,)], "multi-statement result 3")
    eq(cur.nextset(), None, "multi-statement has no result 4")
    # Empty query.
    cur.execute("")
    eq(psycopg.pq.ExecStatus(cur.pgresult.status), psycopg.pq.ExecStatus.EMPTY_QUERY, "empty query status")


def check_prepared(conn):
    query = f"select %s::int4 * 3 + {SUFFIX} - {SUFFIX}, %s::text || '-prepared'"
    cur = conn.cursor()
    for i in range(10):
        cur.execute(query, (i, f"v{i}"), prepare=True)
        eq(cur.fetchone(), (i * 3, f"v{i}-prepared"), f"prepared execution {i}")
    n = conn.execute("select count(*) from pg_prepared_statements "
                     "where statement like %s and from_sql = false",
                     (f"%* 3 + {SUFFIX} - {SUFFIX}%",)).fetchone()[0]
    eq(n, 1, "server-side prepared statements in pg_prepared_statements")


def check_binary(conn):
    cur = conn.cursor(binary=True)
    cur.execute(r"""select 2147483647::int4, '-9223372036854775808'::int8,
                           'héllo wörld ✓'::text, '-12345678901234567890.123456789'::numeric,
                           '\x00ff0001'::bytea, '2024-02-29 23:59:58.123456+05:30'::timestamptz,
                           '{"a": [1, 2.5, {"b": null}], "c": "é"}'::jsonb,
                           array[1, null, -3]::int4[], 'NaN'::numeric, ''::bytea""")
    for i in range(len(cur.description)):
        eq(cur.pgresult.fformat(i), 1, f"column {i} is in binary format")
    row = cur.fetchone()
    expected = (
        2147483647,
        -9223372036854775808,
        "héllo wörld ✓",
        Decimal("-12345678901234567890.123456789"),
        b"\x00\xff\x00\x01",
        dt.datetime(2024, 2, 29, 18, 29, 58, 123456, tzinfo=dt.timezone.utc),
        {"a": [1, 2.5, {"b": None}], "c": "é"},
        [1, None, -3],
        Decimal("NaN"),
        b"",
    )
    names = ["int4", "int8", "text", "numeric", "bytea", "timestamptz", "jsonb", "int4[]",
             "numeric NaN", "empty bytea"]
    for name, got, want in zip(names, row, expected):
        if name == "numeric NaN":
            if not (isinstance(got, Decimal) and got.is_nan()):
                raise AssertionError(f"binary numeric NaN: got {got!r}")
            continue
        if name == "bytea" or name == "empty bytea":
            got = bytes(got)
        eq(got, want, f"binary {name}")
    # Binary parameters round-trip (Bind with binary formats both ways).
    ts = dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)
    cur.execute("select %b::int8, %b::numeric, %b::bytea, %b::timestamptz, %b::text",
                (-1, Decimal("0.000001"), b"\x00\x00\x01", ts, "tab\there"))
    row = cur.fetchone()
    eq((row[0], row[1], bytes(row[2]), row[3], row[4]),
       (-1, Decimal("0.000001"), b"\x00\x00\x01", ts, "tab\there"), "binary parameters round trip")


def check_pipeline(conn):
    conn.execute("create temp table pipe_t (id int primary key)")
    with conn.pipeline() as p:
        c1 = conn.execute("insert into pipe_t values (1) returning id")
        c2 = conn.execute("select %s::text", ("second",))
        c3 = conn.execute("select count(*) from pipe_t")
        p.sync()
        eq(c1.fetchone(), (1,), "pipeline: insert returning")
        eq(c2.fetchone(), ("second",), "pipeline: parameterised select")
        eq(c3.fetchone(), (1,), "pipeline: count sees the insert")

        # An error mid-pipeline: the whole sync group is one implicit transaction and
        # statements after the error are skipped until the Sync.
        # psycopg raises the error from whichever call first reads it (the next execute
        # or the sync), so the whole group is what must fail.
        def failing_group():
            conn.execute("insert into pipe_t values (2)")
            conn.execute("select 1/0")
            conn.execute("insert into pipe_t values (3) returning id")
            p.sync()
        expect_error(errors.DivisionByZero, "22012", failing_group, "pipeline: error mid-pipeline")
        try:
            p.sync()  # make sure the failed group is closed by a Sync
        except errors.PipelineAborted:
            pass

        # Recovery: the next group runs normally.
        c4 = conn.execute("insert into pipe_t values (4) returning id")
        c5 = conn.execute("select array_agg(id order by id) from pipe_t")
        p.sync()
        eq(c4.fetchone(), (4,), "pipeline: insert after recovery")
        eq(c5.fetchone(), ([1, 4],), "pipeline: rows after recovery (group with error rolled back)")
    eq(conn.execute("select 'after pipeline'").fetchone(), ("after pipeline",),
       "query after leaving pipeline mode")


def check_copy(conn):
    conn.execute("create temp table copy_t (id int4 primary key, name text, amount numeric, "
                 "data bytea, at timestamptz)")
    base = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    rows = [(i,
             f"name {i}\twith tab\nnewline \\ backslash, comma \"quote\"" if i % 7 == 0 else f"name {i}",
             Decimal(i) / Decimal(8),
             bytes([i % 256, 0, 255]) if i % 3 else None,
             base + dt.timedelta(seconds=i * 3601, microseconds=i))
            for i in range(1, 1001)]
    with conn.cursor().copy("copy copy_t (id, name, amount, data, at) from stdin") as copy:
        for r in rows:
            copy.write_row(r)
    eq(conn.execute("select count(*), sum(id) from copy_t").fetchone(), (1000, 500500),
       "COPY FROM STDIN: count and sum")

    def read(statement):
        got = []
        with conn.cursor().copy(statement) as copy:
            copy.set_types(["int4", "text", "numeric", "bytea", "timestamptz"])
            for r in copy.rows():
                got.append((r[0], r[1], r[2], None if r[3] is None else bytes(r[3]), r[4]))
        return got

    eq(read("copy (select * from copy_t order by id) to stdout"), rows, "COPY TO STDOUT (text)")
    eq(read("copy (select * from copy_t order by id) to stdout (format binary)"), rows,
       "COPY TO STDOUT (binary)")

    # A client-side failure during COPY FROM sends CopyFail; nothing is written and the
    # connection stays usable.
    class Boom(Exception):
        pass
    try:
        with conn.cursor().copy("copy copy_t (id, name) from stdin") as copy:
            copy.write_row((5000, "never"))
            raise Boom()
    except Boom:
        pass
    eq(conn.execute("select count(*) from copy_t").fetchone(), (1000,),
       "COPY FROM aborted by the client wrote nothing")


def check_transactions():
    with connect() as conn:  # not autocommit
        conn.execute("create temp table tx_t (id int)")
        conn.commit()
        conn.execute("insert into tx_t values (1)")
        eq(psycopg.pq.TransactionStatus(conn.info.transaction_status), psycopg.pq.TransactionStatus.INTRANS, "status in transaction")
        conn.rollback()
        eq(psycopg.pq.TransactionStatus(conn.info.transaction_status), psycopg.pq.TransactionStatus.IDLE, "status after rollback")
        eq(conn.execute("select count(*) from tx_t").fetchone(), (0,), "rolled-back insert is gone")
        conn.rollback()
        with conn.transaction():
            conn.execute("insert into tx_t values (2)")
            with conn.transaction():  # savepoint
                conn.execute("insert into tx_t values (3)")
                raise psycopg.Rollback()
            with conn.transaction():
                conn.execute("insert into tx_t values (4)")
        eq(conn.execute("select array_agg(id order by id) from tx_t").fetchone(), ([2, 4],),
           "savepoint rollback keeps outer work")
        conn.rollback()
        # An error inside a transaction block aborts it until ROLLBACK.
        conn.execute("insert into tx_t values (5)")
        expect_error(errors.DivisionByZero, "22012", lambda: conn.execute("select 1/0"),
                     "error inside transaction")
        eq(psycopg.pq.TransactionStatus(conn.info.transaction_status), psycopg.pq.TransactionStatus.INERROR, "status after error")
        expect_error(errors.InFailedSqlTransaction, "25P02", lambda: conn.execute("select 1"),
                     "statement in aborted transaction")
        conn.rollback()
        eq(conn.execute("select array_agg(id order by id) from tx_t").fetchone(), ([2, 4],),
           "aborted transaction left nothing")
        conn.rollback()


def check_notice(conn):
    notices = []

    def handler(diag):  # a Diagnostic is only readable inside the handler
        notices.append((diag.severity_nonlocalized, diag.sqlstate, diag.message_primary))

    conn.add_notice_handler(handler)
    conn.execute("do $$ begin raise notice 'hello %', 42; raise warning 'careful'; end $$")
    conn.remove_notice_handler(handler)
    eq(notices, [("NOTICE", "00000", "hello 42"), ("WARNING", "01000", "careful")], "notices received")


def check_listen_notify(conn):
    channel = f"pgclone_chan_{SUFFIX}"
    conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
    with connect(autocommit=True) as other:
        other_pid = other.execute("select pg_backend_pid()").fetchone()[0]
        other.execute("select pg_notify(%s, %s)", (channel, "payload é 1"))
        other.execute(sql.SQL("notify {}, 'payload 2'").format(sql.Identifier(channel)))
    got = [(n.channel, n.payload, n.pid) for n in conn.notifies(timeout=5, stop_after=2)]
    eq(got, [(channel, "payload é 1", other_pid), (channel, "payload 2", other_pid)],
       "notifications received")
    conn.execute(sql.SQL("unlisten {}").format(sql.Identifier(channel)))


def check_errors(conn):
    missing = f"no_such_table_{SUFFIX}"
    e = expect_error(errors.UndefinedTable, "42P01",
                     lambda: conn.execute(sql.SQL("select * from {}").format(sql.Identifier(missing))),
                     "undefined table")
    eq(e.diag.message_primary, f'relation "{missing}" does not exist', "42P01 message")
    eq(e.diag.severity_nonlocalized, "ERROR", "42P01 severity")
    conn.execute("create temp table uniq_t (id int constraint uniq_t_pk primary key)")
    conn.execute("insert into uniq_t values (1)")
    e = expect_error(errors.UniqueViolation, "23505",
                     lambda: conn.execute("insert into uniq_t values (%s)", (1,)), "duplicate key")
    eq(e.diag.constraint_name, "uniq_t_pk", "23505 constraint name")
    eq(e.diag.table_name, "uniq_t", "23505 table name")
    eq(e.diag.message_detail, "Key (id)=(1) already exists.", "23505 detail")
    expect_error(errors.SyntaxError, "42601", lambda: conn.execute("selec 1"), "syntax error")
    eq(conn.execute("select 'still usable'").fetchone(), ("still usable",), "connection usable after errors")


def check_named_cursor():
    with connect() as conn:
        with conn.cursor(name=f"cur_{SUFFIX}") as cur:
            cur.itersize = 100
            cur.execute("select g, md5(g::text) from generate_series(1, 1000) g order by g")
            n = total = 0
            for g, h in cur:
                n += 1
                total += g
            eq((n, total), (1000, 500500), "server-side cursor rows")
        conn.rollback()


def check_cancel(conn):
    pid = conn.execute("select pg_backend_pid()").fetchone()[0]

    def cancel_later():
        time.sleep(0.5)
        if hasattr(conn, "cancel_safe"):
            conn.cancel_safe(timeout=5)
        else:
            conn.cancel()

    t = threading.Thread(target=cancel_later)
    start = time.monotonic()
    t.start()
    try:
        expect_error(errors.QueryCanceled, "57014", lambda: conn.execute("select pg_sleep(30)"),
                     "cancelled pg_sleep")
    finally:
        t.join()
    elapsed = time.monotonic() - start
    if elapsed > 2.5:
        raise AssertionError(f"cancel took {elapsed:.1f} s (cancel sent after 0.5 s)")
    eq(conn.execute("select pg_backend_pid()").fetchone()[0], pid, "same session after cancel")
    eq(conn.execute("select 'alive'").fetchone(), ("alive",), "connection usable after cancel")


def main():
    def watchdog():
        print(f"FAIL {NAME}: timed out after {WATCHDOG_SECONDS:.0f} s", flush=True)
        os._exit(2)
    timer = threading.Timer(WATCHDOG_SECONDS, watchdog)
    timer.daemon = True
    timer.start()

    current = "connect"
    try:
        with connect(autocommit=True) as conn:
            checks = [
                ("simple_query", lambda: check_simple_query(conn)),
                ("prepared", lambda: check_prepared(conn)),
                ("binary", lambda: check_binary(conn)),
                ("pipeline", lambda: check_pipeline(conn)),
                ("copy", lambda: check_copy(conn)),
                ("transactions", check_transactions),
                ("notice", lambda: check_notice(conn)),
                ("listen_notify", lambda: check_listen_notify(conn)),
                ("errors", lambda: check_errors(conn)),
                ("named_cursor", check_named_cursor),
                ("cancel", lambda: check_cancel(conn)),
            ]
            for current, fn in checks:
                fn()
                print(f"  ok {current}", flush=True)
    except Exception as e:
        traceback.print_exc()
        print(f"FAIL {NAME}: {current}: {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"OK {NAME}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
