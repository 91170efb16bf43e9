# shellcheck shell=bash
# bench/lib.sh: minimal throwaway-cluster and process helpers for bench/*.sh.
# Sourced, not executed. Self-contained on purpose: it does not use scripts/lib/pg.sh.
#
# Everything a helper starts is recorded in BENCH_PIDS / BENCH_CLUSTERS so that
# bench_cleanup (installed by the caller as an EXIT trap) can stop it.

BENCH_PIDS=()      # processes we started (pgclone, pgbouncer, python helpers)
BENCH_CLUSTERS=()  # data directories of clusters we started

bench_log() { printf '[bench] %s\n' "$*" >&2; }
bench_die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# Directory holding initdb / pg_ctl / postgres for the PostgreSQL major version.
bench_pg_bindir() {
    local d
    for d in "${PG_BINDIR:-}" /usr/lib/postgresql/15/bin "$(pg_config --bindir 2>/dev/null)"; do
        [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    bench_die "cannot find initdb (set PG_BINDIR)"
}

# Run a command as the postgres OS user (initdb and postgres refuse root).
bench_as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# bench_free_port: print a TCP port nobody listens on, picked at random in
# BENCH_PORT_RANGE (default 20000-29999).
bench_free_port() {
    local range=${BENCH_PORT_RANGE:-20000-29999}
    local lo=${range%-*} hi=${range#*-} p i
    for i in $(seq 1 200); do
        p=$(( lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1) ))
        if [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    bench_die "no free port in $range"
}

# bench_wait_port PORT SECONDS [PID]: wait until something listens on 127.0.0.1:PORT.
# Fails early if PID (the process expected to listen) has exited.
bench_wait_port() {
    local port=$1 secs=$2 pid=${3:-} i
    for i in $(seq 1 $((secs * 10))); do
        [ -n "$(ss -Htln "sport = :$port" 2>/dev/null)" ] && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# bench_cluster_init DIR PORT PASSWORD: initdb a cluster in DIR/data that listens on
# 127.0.0.1:PORT and on a private unix socket in DIR/sock, scram-sha-256 everywhere,
# superuser postgres with PASSWORD. DIR must exist; it is handed to the postgres user.
bench_cluster_init() {
    local dir=$1 port=$2 password=$3 bindir
    bindir=$(bench_pg_bindir)
    mkdir -p "$dir/sock"
    printf '%s\n' "$password" > "$dir/pwfile"
    chmod 600 "$dir/pwfile"
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$dir"
    bench_as_postgres "$bindir/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 \
        --pwfile="$dir/pwfile" --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; bench_die "initdb failed in $dir"; }
    rm -f "$dir/pwfile"
    cat >> "$dir/data/postgresql.conf" <<EOF

# --- bench/lib.sh ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
max_connections = 300
shared_buffers = 256MB
password_encryption = 'scram-sha-256'
# the benchmark is read-only; these only speed up pgbench -i
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
}

# bench_cluster_start DIR: start the cluster of DIR (log in DIR/postgres.log) and wait.
bench_cluster_start() {
    local dir=$1
    BENCH_CLUSTERS+=("$dir")
    bench_as_postgres "$(bench_pg_bindir)/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" \
        -w -t 60 start >/dev/null \
        || { tail -n 30 "$dir/postgres.log" >&2; bench_die "cluster in $dir did not start"; }
}

# bench_cluster_stop DIR: stop it (fast), if running.
bench_cluster_stop() {
    local dir=$1 bindir
    bindir=$(bench_pg_bindir)
    [ -f "$dir/data/postmaster.pid" ] || return 0
    bench_as_postgres "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
        || bench_as_postgres "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 \
        || true
}

# bench_scram_secret DIR ROLE: the role's SCRAM verifier from pg_authid (for pgbouncer's auth_file).
bench_scram_secret() {
    local dir=$1 role=$2
    psql -X -At -h "$dir/sock" -p "$(bench_cluster_port "$dir")" -U postgres -d postgres \
        -v role="$role" <<<"select rolpassword from pg_authid where rolname = :'role'"
}

bench_cluster_port() { sed -n "s/^port = \([0-9]*\)$/\1/p" "$1/data/postgresql.conf" | tail -n 1; }

# bench_track PID: remember a process so bench_cleanup stops it.
bench_track() { BENCH_PIDS+=("$1"); }

# bench_stop_pid PID: TERM, wait up to 10 s, then KILL.
bench_stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    bench_log "pid $pid ignored SIGTERM for 10 s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# bench_cleanup: stop every tracked process (newest first), then every cluster.
# Runs with errexit off: one failure must not leave the rest running.
bench_cleanup() {
    local i
    set +e
    for (( i=${#BENCH_PIDS[@]}-1; i>=0; i-- )); do
        bench_stop_pid "${BENCH_PIDS[$i]}"
    done
    for (( i=${#BENCH_CLUSTERS[@]}-1; i>=0; i-- )); do
        bench_cluster_stop "${BENCH_CLUSTERS[$i]}"
    done
}

# bench_rss_kib PID: VmRSS of PID in KiB.
bench_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# bench_cpu_ticks PID: utime+stime of PID in clock ticks.
bench_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# bench_on_exit: the EXIT trap every bench installs with bench_trap_exit. Stops the
# running timed client ($CHILD, with its process group), prints the tail of each file in
# BENCH_LOGS when the run failed, stops everything bench_cleanup tracks, and removes $work
# unless BENCH_KEEP_WORKDIR=1. When the script keeps its own stdout/stderr on fds 8/9
# (a trap can fire while output is redirected to a file), they are restored first.
bench_on_exit() {
    local rc=$? f
    set +e
    trap - EXIT INT TERM
    if { true >&8; } 2>/dev/null && { true >&9; } 2>/dev/null; then exec 1>&8 2>&9; fi
    if [ -n "${CHILD:-}" ]; then
        kill -TERM -- "-$CHILD" 2>/dev/null || kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    if [ "$rc" -ne 0 ]; then
        for f in "${BENCH_LOGS[@]}"; do
            [ -s "$f" ] || continue
            printf '\n--- last lines of %s ---\n' "${f#"$work"/}" >&2
            tail -n 25 "$f" >&2
        done
    fi
    bench_cleanup
    if [ "${BENCH_KEEP_WORKDIR:-0}" = 1 ]; then
        bench_log "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}

# bench_trap_exit LOG...: install bench_on_exit, reporting these log files on failure.
bench_trap_exit() {
    BENCH_LOGS=("$@")
    trap bench_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# bench_pgclone_binary ROOT: print the pgclone binary to benchmark: PGCLONE_BIN (default
# ROOT/.build/release/pgclone) with BENCH_NO_BUILD=1, else a fresh release build.
bench_pgclone_binary() {
    local root=$1 bin
    if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
        bin=${PGCLONE_BIN:-$root/.build/release/pgclone}
    else
        bench_log "building pgclone (release)"
        (cd "$root" && swift build -c release --product pgclone) >&2
        bin="$(cd "$root" && swift build -c release --show-bin-path)/pgclone"
    fi
    [ -x "$bin" ] || bench_die "pgclone binary not found at $bin"
    echo "$bin"
}
