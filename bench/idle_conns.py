#!/usr/bin/env python3
"""Open N client connections and hold them idle (connected, doing nothing).

Connection comes from the usual libpq variables (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE, PGAPPNAME). Prints "READY <n>" once every connection is
open, then sleeps until SIGTERM/SIGINT or --hold seconds, and closes them all.
Used by bench/proxy.sh to measure the proxy's memory per idle connection.
"""
import argparse
import signal
import sys
import threading

import psycopg


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--hold", type=float, default=120.0, help="seconds to hold at most")
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    conns = []
    try:
        for i in range(args.count):
            if stop.is_set():
                return 1
            conn = psycopg.connect(autocommit=True)
            conns.append(conn)
        # One round trip on each, so every session is fully established end to end.
        for conn in conns:
            conn.execute("select 1").fetchone()
        print(f"READY {len(conns)}", flush=True)
        stop.wait(args.hold)
        return 0
    except psycopg.Error as e:
        print(f"FAILED after {len(conns)} connections: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass


if __name__ == "__main__":
    sys.exit(main())
