#!/usr/bin/env python3
"""Guide clone calls over the extended query protocol (psycopg 3) through the pgclone proxy.

Connection from PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE (a fresh target
database); the source conninfo from GUIDE_SOURCE. Every argument is a $n parameter bound
at Bind time. Prints one line per check; GuideCloneTests compares the output exactly.
Exits non-zero with a traceback on anything unexpected.
"""
import os

import psycopg
from psycopg import errors


def main():
    source = os.environ["GUIDE_SOURCE"]
    with psycopg.connect(connect_timeout=10, autocommit=True) as conn:
        # Named server-side prepared statement (Parse/Describe/Bind/Execute), no parameters.
        cur = conn.execute("SELECT pgclone.version()", prepare=True)
        print(f"version: {cur.fetchone()[0]} ({cur.description[0].type_code})")

        # Guide 2.1 with every argument bound as a parameter (unnamed statement).
        cur = conn.execute("SELECT pgclone.table(%s, %s, %s, %s)",
                           [source, "test_schema", "customers", True])
        print(f"table: {cur.fetchone()[0]} ({cur.description[0].type_code})")

        # Guide 4.2 (conflict skip), six parameters, as a named prepared statement.
        cur = conn.execute("SELECT pgclone.table(%s, %s, %s, %s, %s, %s)",
                           [source, "test_schema", "customers", True, "customers", '{"conflict": "skip"}'],
                           prepare=True)
        print(f"skip: {cur.fetchone()[0]}")

        # Guide 2.3 (different target name), five parameters.
        cur = conn.execute("SELECT pgclone.table(%s, %s, %s, %s, %s)",
                           [source, "test_schema", "customers", True, "customers_backup"])
        print(f"backup: {cur.fetchone()[0]}")

        cur = conn.execute("SELECT (SELECT count(*) FROM test_schema.customers),"
                           " (SELECT count(*) FROM test_schema.customers_backup)")
        customers, backup = cur.fetchone()
        print(f"counts: {customers} {backup}")

        # Guide 18.2 over the extended protocol: a proper ErrorResponse, the session survives.
        try:
            conn.execute("SELECT pgclone.table(%s, %s, %s, %s)",
                         [source, "test_schema", "this_table_does_not_exist", True])
            print("error: none")
        except errors.Error as e:
            print(f"error: {e.sqlstate} {e.diag.message_primary}")

        print(f"after error: {conn.execute('SELECT 1').fetchone()[0]}")


if __name__ == "__main__":
    main()
