#!/usr/bin/env bash
# bench/proxy.sh: relay overhead of pgclone, next to direct PostgreSQL and PgBouncer.
#
# One run, one throwaway target cluster:
#   1. build pgclone (release) unless BENCH_NO_BUILD=1
#   2. initdb + start a cluster (loopback only, scram-sha-256), pgbench -i -s $BENCH_SCALE
#   3. start pgclone, pgbouncer (session pooling) and relay_floor (bench/relay_floor.c: epoll,
#      read, write and nothing else, the kernel's cost of one more TCP hop) in front of it
#   4. pgbench -S -n -c 8 -j 2 -T $BENCH_SECONDS through direct / pgclone / pgbouncer,
#      with -M simple and -M prepared; TPS, mean latency, proxy CPU, ratios
#   5. pgclone RSS before, while holding $BENCH_IDLE_CONNS idle client connections, and after
# Everything started here is stopped on exit, success or not.
#
# Environment (all optional):
#   BENCH_SECONDS=30  BENCH_SCALE=10  BENCH_CLIENTS=8  BENCH_THREADS=2  BENCH_WARMUP=5
#   BENCH_TARGETS="direct pgclone pgbouncer floor"   BENCH_MODES="simple prepared"
#   BENCH_FLOOR_THREADS=1 (threads of relay_floor, each with its own epoll)
#   BENCH_IDLE_CONNS=200   BENCH_PORT_RANGE=20000-29999
#   BENCH_NO_BUILD=1 (use PGCLONE_BIN, default .build/release/pgclone)
#   BENCH_PGCLONE_ARGS="..." (extra arguments for pgclone serve)
#   BENCH_PYTHON=python3 (needs psycopg 3 for the idle-connection test)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

SECS=${BENCH_SECONDS:-30}
SCALE=${BENCH_SCALE:-10}
CLIENTS=${BENCH_CLIENTS:-8}
THREADS=${BENCH_THREADS:-2}
WARMUP=${BENCH_WARMUP:-5}
TARGETS=${BENCH_TARGETS:-direct pgclone pgbouncer floor}
MODES=${BENCH_MODES:-simple prepared}
IDLE_CONNS=${BENCH_IDLE_CONNS:-200}
PYTHON=${BENCH_PYTHON:-python3}
TICKS=$(getconf CLK_TCK)

has_target() { [[ " $TARGETS " == *" $1 "* ]]; }

for tool in pgbench psql ss awk; do
    command -v "$tool" >/dev/null || bench_die "$tool not found"
done
has_target floor && { command -v cc >/dev/null || bench_die "cc not found (apt-get install gcc)"; }
has_target pgbouncer && { command -v pgbouncer >/dev/null || bench_die "pgbouncer not found (apt-get install pgbouncer)"; }
[ "$(id -u)" -eq 0 ] || [ "$(id -un)" = postgres ] || bench_die "run as root (server tools then run as the postgres user) or as postgres"

# --- 1. build ---------------------------------------------------------------
bin=""
if has_target pgclone; then
    if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
        bin=${PGCLONE_BIN:-$root/.build/release/pgclone}
    else
        bench_log "building pgclone (release)"
        (cd "$root" && swift build -c release --product pgclone)
        bin="$(cd "$root" && swift build -c release --show-bin-path)/pgclone"
    fi
    [ -x "$bin" ] || bench_die "pgclone binary not found at $bin"
fi

# --- 2. cluster ---------------------------------------------------------------
work=$(mktemp -d /tmp/pgclone-bench.XXXXXX)
CHILD=""   # the pgbench currently running, if any
bench_trap_exit "$work/pgclone.log" "$work/pgbouncer.log" "$work/postgres.log"

PASSWORD=${BENCH_PASSWORD:-$(openssl rand -hex 12)}
export PGPASSWORD=$PASSWORD PGUSER=postgres PGDATABASE=postgres
unset PGHOST PGPORT PGSERVICE PGOPTIONS PGSSLMODE

pg_port=$(bench_free_port)
bench_log "initdb in $work (port $pg_port)"
bench_cluster_init "$work" "$pg_port" "$PASSWORD"
bench_cluster_start "$work"
bench_log "pgbench -i -s $SCALE"
pgbench -i -q -s "$SCALE" -h "$work/sock" -p "$pg_port" postgres >"$work/pgbench-init.log" 2>&1 \
    || { cat "$work/pgbench-init.log" >&2; bench_die "pgbench -i failed"; }

declare -A PORT PID
PORT[direct]=$pg_port

# --- 3. proxies ---------------------------------------------------------------
if has_target pgclone; then
    PORT[pgclone]=$(bench_free_port)
    bench_log "starting pgclone on 127.0.0.1:${PORT[pgclone]}"
    # shellcheck disable=SC2086 # BENCH_PGCLONE_ARGS is a word list on purpose
    (cd "$root" && exec "$bin" serve --listen "127.0.0.1:${PORT[pgclone]}" \
        --backend "host=127.0.0.1 port=$pg_port dbname=postgres user=postgres password=$PASSWORD" \
        ${BENCH_PGCLONE_ARGS:-}) >"$work/pgclone.log" 2>&1 &
    PID[pgclone]=$!
    bench_track "${PID[pgclone]}"
    bench_wait_port "${PORT[pgclone]}" 60 "${PID[pgclone]}" || bench_die "pgclone did not start listening"
    got=$(psql -X -At -h 127.0.0.1 -p "${PORT[pgclone]}" -c "select 'through-pgclone'" 2>&1) || true
    [ "$got" = through-pgclone ] || bench_die "query through pgclone failed: $got"
    rss_start=$(bench_rss_kib "${PID[pgclone]}")
fi

if has_target pgbouncer; then
    PORT[pgbouncer]=$(bench_free_port)
    secret=$(bench_scram_secret "$work" postgres)
    [[ "$secret" == SCRAM-SHA-256* ]] || bench_die "no SCRAM secret for postgres in pg_authid"
    printf '"postgres" "%s"\n' "$secret" >"$work/userlist.txt"
    cat >"$work/pgbouncer.ini" <<EOF
[databases]
postgres = host=127.0.0.1 port=$pg_port dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${PORT[pgbouncer]}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 300
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
EOF
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$work/userlist.txt" "$work/pgbouncer.ini"
    chmod 600 "$work/userlist.txt"
    bench_log "starting pgbouncer on 127.0.0.1:${PORT[pgbouncer]}"
    # pgbouncer refuses to run as root; setpriv execs, so $! is pgbouncer itself.
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- pgbouncer "$work/pgbouncer.ini" \
            >>"$work/pgbouncer.out" 2>&1 &
    else
        pgbouncer "$work/pgbouncer.ini" >>"$work/pgbouncer.out" 2>&1 &
    fi
    PID[pgbouncer]=$!
    bench_track "${PID[pgbouncer]}"
    bench_wait_port "${PORT[pgbouncer]}" 30 "${PID[pgbouncer]}" || bench_die "pgbouncer did not start listening"
    got=$(psql -X -At -h 127.0.0.1 -p "${PORT[pgbouncer]}" -c "select 'through-pgbouncer'" 2>&1) || true
    [ "$got" = through-pgbouncer ] || bench_die "query through pgbouncer failed: $got"
fi

if has_target floor; then
    PORT[floor]=$(bench_free_port)
    cc -O2 -pthread -o "$work/relay_floor" "$here/relay_floor.c" || bench_die "cannot compile relay_floor.c"
    bench_log "starting relay_floor on 127.0.0.1:${PORT[floor]} (${BENCH_FLOOR_THREADS:-1} thread(s))"
    "$work/relay_floor" "${PORT[floor]}" "$pg_port" "${BENCH_FLOOR_THREADS:-1}" >"$work/floor.out" 2>&1 &
    PID[floor]=$!
    bench_track "${PID[floor]}"
    bench_wait_port "${PORT[floor]}" 30 "${PID[floor]}" || bench_die "relay_floor did not start listening"
fi

# --- 4. pgbench -S ------------------------------------------------------------
declare -A TPS LAT CPU

# run_pgbench TARGET MODE SECONDS OUTFILE
# pgbench runs in the background so that a TERM/INT trap fires at once, not after -T seconds.
run_pgbench() {
    local rc=0
    pgbench -S -n -M "$2" -c "$CLIENTS" -j "$THREADS" -T "$3" \
        -h 127.0.0.1 -p "${PORT[$1]}" postgres >"$4" 2>&1 &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    [ "$rc" -eq 0 ] || { cat "$4" >&2; bench_die "pgbench through $1 (-M $2) failed"; }
}

# context_switches PID: voluntary + involuntary context switches of every thread of PID.
context_switches() {
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }' /proc/"$1"/task/*/status 2>/dev/null
}
declare -A TICKS_USED SWITCHES

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$WARMUP" -gt 0 ]; then
    bench_log "warm-up: ${WARMUP}s direct"
    run_pgbench direct simple "$WARMUP" "$work/warmup.txt"
fi

for mode in $MODES; do
    for target in $TARGETS; do
        out="$work/pgbench-$target-$mode.txt"
        bench_log "pgbench -S -M $mode -c $CLIENTS -j $THREADS -T $SECS via $target"
        pid=${PID[$target]:-}
        [ -n "$pid" ] && { t0=$(bench_cpu_ticks "$pid"); c0=$(context_switches "$pid"); }
        run_pgbench "$target" "$mode" "$SECS" "$out"
        if [ -n "$pid" ]; then
            t1=$(bench_cpu_ticks "$pid")
            c1=$(context_switches "$pid")
            CPU[$target,$mode]=$(awk -v d=$((t1 - t0)) -v hz="$TICKS" -v s="$SECS" 'BEGIN { printf "%.2f", d / hz / s }')
            TICKS_USED[$target,$mode]=$((t1 - t0))
            SWITCHES[$target,$mode]=$((c1 - c0))
        else
            CPU[$target,$mode]="-"
        fi
        TPS[$target,$mode]=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
        LAT[$target,$mode]=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$out")
        if [ -z "${TPS[$target,$mode]}" ] || [ -z "${LAT[$target,$mode]}" ]; then
            cat "$out" >&2
            bench_die "cannot parse pgbench output ($target, $mode)"
        fi
    done
done

ratio() { # ratio A B: A/B with two decimals, "-" when either is missing
    if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo "-"; fi
}

echo
echo "pgbench -S -n -c $CLIENTS -j $THREADS -T $SECS, scale $SCALE, $(nproc) cores (pgbench shares them)"
# CPU per transaction (µs) and context switches per transaction of the proxy process.
per_tx() { # per_tx TARGET MODE
    local t=${TICKS_USED[$1,$2]:-} c=${SWITCHES[$1,$2]:-} tps=${TPS[$1,$2]}
    if [ -z "$t" ]; then echo "- -"; return; fi
    awk -v t="$t" -v c="$c" -v hz="$TICKS" -v tps="$tps" -v s="$SECS" 'BEGIN { n = tps * s; printf "%.1f %.2f", t / hz * 1e6 / n, c / n }'
}
printf '%-9s %-10s %12s %12s %11s %10s %12s\n' mode target tps latency_ms proxy_cores cpu_us/tx switches/tx
for mode in $MODES; do
    for target in $TARGETS; do
        read -r us sw <<<"$(per_tx "$target" "$mode")"
        printf '%-9s %-10s %12.1f %12.3f %11s %10s %12s\n' "$mode" "$target" \
            "${TPS[$target,$mode]}" "${LAT[$target,$mode]}" "${CPU[$target,$mode]}" "$us" "$sw"
    done
done
echo
echo "goals: pgclone/pgbouncer >= 1.10 in both modes, pgclone cpu_us/tx below pgbouncer's"
echo "floor: relay_floor copies bytes and nothing else; no proxy can do better than it here"
echo
echo "TPS ratios"
for mode in $MODES; do
    printf '%-9s pgclone/direct = %s   pgclone/pgbouncer = %s   pgbouncer/direct = %s\n' "$mode" \
        "$(ratio "${TPS[pgclone,$mode]:-}" "${TPS[direct,$mode]:-}")" \
        "$(ratio "${TPS[pgclone,$mode]:-}" "${TPS[pgbouncer,$mode]:-}")" \
        "$(ratio "${TPS[pgbouncer,$mode]:-}" "${TPS[direct,$mode]:-}")"
    if has_target floor; then
        printf '%-9s floor/pgbouncer = %s   pgclone/floor = %s\n' "$mode" \
            "$(ratio "${TPS[floor,$mode]:-}" "${TPS[pgbouncer,$mode]:-}")" \
            "$(ratio "${TPS[pgclone,$mode]:-}" "${TPS[floor,$mode]:-}")"
    fi
done

# --- 5. pgclone RSS with idle connections -----------------------------------
rss_line="pgclone RSS: not measured (pgclone not in BENCH_TARGETS)"
if has_target pgclone; then
    if ! "$PYTHON" -c 'import psycopg' 2>/dev/null; then
        rss_line="pgclone RSS: skipped, $PYTHON has no psycopg (pip install 'psycopg[binary]')"
        echo; echo "$rss_line"
    else
        sleep 1
        rss_before=$(bench_rss_kib "${PID[pgclone]}")
        echo
        echo "pgclone RSS with $IDLE_CONNS idle client connections (pid ${PID[pgclone]})"
        PGHOST=127.0.0.1 PGPORT=${PORT[pgclone]} PGAPPNAME=pgclone-bench-idle \
            "$PYTHON" "$here/idle_conns.py" --count "$IDLE_CONNS" --hold 300 \
            >"$work/idle.out" 2>"$work/idle.err" &
        idle_pid=$!
        bench_track "$idle_pid"
        for _ in $(seq 1 1200); do
            grep -q '^READY' "$work/idle.out" 2>/dev/null && break
            kill -0 "$idle_pid" 2>/dev/null || { cat "$work/idle.err" >&2; bench_die "idle-connection helper failed"; }
            sleep 0.1
        done
        grep -q '^READY' "$work/idle.out" || bench_die "idle connections not ready after 120 s"
        on_target=$(psql -X -At -h "$work/sock" -p "$pg_port" \
            -c "select count(*) from pg_stat_activity where application_name = 'pgclone-bench-idle'")
        sleep 2
        rss_during=0
        for _ in 1 2 3; do
            r=$(bench_rss_kib "${PID[pgclone]}")
            [ "$r" -gt "$rss_during" ] && rss_during=$r
            sleep 1
        done
        bench_stop_pid "$idle_pid"
        sleep 2
        rss_after=$(bench_rss_kib "${PID[pgclone]}")
        per_conn=$(awk -v a="$rss_during" -v b="$rss_before" -v n="$IDLE_CONNS" 'BEGIN { printf "%.1f", (a - b) / n }')
        mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
        printf '  %-40s %s\n' "at start (before any client)" "$(mib "$rss_start")"
        printf '  %-40s %s\n' "after the pgbench runs, no client" "$(mib "$rss_before")"
        printf '  %-40s %s  (%s sessions seen on the target)\n' "with $IDLE_CONNS idle connections" "$(mib "$rss_during")" "$on_target"
        printf '  %-40s %s\n' "after they disconnected" "$(mib "$rss_after")"
        printf '  %-40s %s KiB\n' "per idle connection" "$per_conn"
        rss_line="pgclone RSS: $(mib "$rss_before") idle, $(mib "$rss_during") with $IDLE_CONNS idle connections (+$per_conn KiB each), $(mib "$rss_after") after"
        [ "$on_target" -eq "$IDLE_CONNS" ] || bench_die "expected $IDLE_CONNS sessions on the target, saw $on_target"
    fi
fi

# --- summary ----------------------------------------------------------------
echo
echo "==================== summary ===================="
echo "pgbench -S (select-only), scale $SCALE, -c $CLIENTS -j $THREADS, ${SECS}s per run, $(nproc) cores"
echo "load average before the runs: $load_before (other work on the machine skews every number)"
for mode in $MODES; do
    line="$(printf '%-8s' "$mode:")"
    for target in $TARGETS; do
        line+=" $target $(printf '%.0f' "${TPS[$target,$mode]}") tps / ${LAT[$target,$mode]} ms;"
    done
    echo "$line"
    if has_target pgclone; then
        echo "          pgclone/direct $(ratio "${TPS[pgclone,$mode]:-}" "${TPS[direct,$mode]:-}")x, pgclone/pgbouncer $(ratio "${TPS[pgclone,$mode]:-}" "${TPS[pgbouncer,$mode]:-}")x"
        if has_target floor; then
            echo "          floor/pgbouncer $(ratio "${TPS[floor,$mode]:-}" "${TPS[pgbouncer,$mode]:-}")x (the most any relay reaches here)"
        fi
    else
        echo "          pgbouncer/direct $(ratio "${TPS[pgbouncer,$mode]:-}" "${TPS[direct,$mode]:-}")x"
    fi
done
echo "$rss_line"
echo "================================================="
