#!/usr/bin/env python3
"""pgclone admin calls through asyncpg: named prepared statements, Describe of the
statement (parameter types), binary parameters, calls inside a transaction.

Connection from PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE; the source conninfo from
ADMIN_SOURCE. Prints one line per check; AdminChannelTests compares the output exactly.
"""
import asyncio
import os

import asyncpg


async def main():
    source = os.environ["ADMIN_SOURCE"]
    conn = await asyncpg.connect(ssl=False)
    print("version:", await conn.fetchval("SELECT pgclone.version()"))
    statement = await conn.prepare("SELECT pgclone.table($1, $2, $3, $4, $5, $6)")
    print("parameter types:", [t.name for t in statement.get_parameters()])
    print("result:", [(a.name, a.type.name) for a in statement.get_attributes()])
    for _ in range(2):
        print("call:", await statement.fetchval(source, "test_schema", "customers", True, "apg_copy", '{"conflict": "replace"}'))
    print("count:", await conn.fetchval("SELECT count(*) FROM test_schema.apg_copy"))
    try:
        await conn.fetchval("SELECT pgclone.table($1, 'test_schema', 'nope', true)", source)
    except asyncpg.PostgresError as error:
        print("error:", error.sqlstate, error.args[0])
    async with conn.transaction():
        print("in transaction:", await conn.fetchval("SELECT pgclone.version()"))
    print("after:", await conn.fetchval("SELECT 41 + 1"))
    await conn.close()


asyncio.run(main())
