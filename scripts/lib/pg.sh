# shellcheck shell=bash
# Helpers for throwaway PostgreSQL clusters used by scripts/test and scripts/demo.
# Source this file; it is safe under `set -euo pipefail` and changes no shell options.
#
# Cluster layout (DIR is what pg_cluster_* take):
#   DIR/data                 PGDATA (server.crt / server.key inside, self-signed)
#   DIR/sock                 unix socket directory
#   DIR/log/postgresql.log   server log
#
# Pair layout (BASEDIR is what pg_setup_pair / pg_teardown take):
#   BASEDIR/source           source cluster, database db1 seeded with test/fixtures/seed.sql
#   BASEDIR/target           target cluster, database db2
#   BASEDIR/proxy-tls/       server.crt / server.key for the proxy's client-facing TLS
#   BASEDIR/env              `export PGCLONE_TEST_...` lines describing all of the above

_PG_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_PG_REPO_ROOT="$(cd "$_PG_LIB_DIR/../.." && pwd)"

_pg_err() { printf '%s\n' "$*" >&2; }

# Run a command as the OS user owning the clusters: `postgres` when we are root
# (initdb/postgres refuse to run as root), ourselves otherwise. Runs from / so a
# cwd that postgres cannot read (e.g. /root) does not produce warnings.
_pg_as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# chown to postgres when root (no-op otherwise).
_pg_chown() {
    if [[ $EUID -eq 0 ]]; then
        chown "$@"
    fi
}

_pg_sudo() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _pg_err "need root (or sudo) to run: $*"
        return 1
    fi
}

# ---------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------

pg_install_deps() {
    local pkgs=(postgresql postgresql-contrib libpq-dev libssl-dev libpg-query-dev
                pgbouncer pgcopydb python3-pip openssl)
    local missing=() p out
    for p in "${pkgs[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]})); then
        _pg_err "pg_install_deps: installing ${missing[*]}"
        out=$(_pg_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq 2>&1) || {
            printf '%s\n' "$out" >&2; _pg_err "pg_install_deps: apt-get update failed"; return 1; }
        out=$(_pg_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                  --no-install-recommends "${missing[@]}" 2>&1) || {
            printf '%s\n' "$out" >&2; _pg_err "pg_install_deps: apt-get install failed"; return 1; }
    fi

    local pymissing=()
    python3 -c 'import psycopg' >/dev/null 2>&1 || pymissing+=('psycopg[binary]')
    python3 -c 'import asyncpg' >/dev/null 2>&1 || pymissing+=('asyncpg')
    if ((${#pymissing[@]})); then
        _pg_err "pg_install_deps: pip installing ${pymissing[*]}"
        local pip=(env PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
                   python3 -m pip install --quiet "${pymissing[@]}")
        if ! out=$("${pip[@]}" 2>&1); then
            if grep -qi 'externally-managed' <<<"$out"; then
                out=$("${pip[@]}" --break-system-packages 2>&1) || {
                    printf '%s\n' "$out" >&2; _pg_err "pg_install_deps: pip install failed"; return 1; }
            else
                printf '%s\n' "$out" >&2; _pg_err "pg_install_deps: pip install failed"; return 1
            fi
        fi
    fi
}

# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------

# Highest installed PostgreSQL server version's bin dir (override: PGCLONE_PG_BIN).
pg_bin_dir() {
    if [[ -n ${PGCLONE_PG_BIN:-} ]]; then
        printf '%s\n' "$PGCLONE_PG_BIN"
        return 0
    fi
    local d
    d=$( { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -n 1)
    if [[ -z $d || ! -x $d/pg_ctl ]]; then
        _pg_err "pg_bin_dir: no PostgreSQL server found under /usr/lib/postgresql (run pg_install_deps)"
        return 1
    fi
    printf '%s\n' "$d"
}

# A currently free TCP port on 127.0.0.1.
pg_free_port() {
    python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# True if something accepts TCP connections on 127.0.0.1:PORT (or HOST PORT).
pg_port_in_use() {
    local host=127.0.0.1 port=$1
    if [[ $# -ge 2 ]]; then host=$1; port=$2; fi
    python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(1)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
sys.exit(0)' "$host" "$port"
}

# psql as superuser postgres over TCP 127.0.0.1, password from PGCLONE_TEST_PASSWORD
# (or PGPASSWORD). Usage: pg_psql_super PORT DB [psql args...]
pg_psql_super() {
    local port=$1 db=$2
    shift 2
    local bin
    bin=$(pg_bin_dir) || return 1
    env -u PGSERVICE -u PGSSLMODE -u PGOPTIONS \
        PGPASSWORD="${PGCLONE_TEST_PASSWORD:-${PGPASSWORD:-}}" PGCONNECT_TIMEOUT=10 \
        "$bin/psql" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}

# psql as postgres over the cluster's unix socket (trust). Usage: _pg_psql_local DIR DB [args...]
_pg_psql_local() {
    local dir=$1 db=$2
    shift 2
    local bin port
    bin=$(pg_bin_dir) || return 1
    port=$(_pg_conf_port "$dir") || return 1
    env -u PGSERVICE -u PGSSLMODE -u PGOPTIONS -u PGPASSWORD \
        "$bin/psql" -X -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U postgres -d "$db" "$@"
}

# Self-signed certificate: _pg_make_cert CERT KEY CN
_pg_make_cert() {
    local cert=$1 key=$2 cn=$3 out
    out=$(openssl req -x509 -nodes -newkey rsa:2048 -sha256 -days 3650 \
              -subj "/CN=$cn" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
              -keyout "$key" -out "$cert" 2>&1) || {
        printf '%s\n' "$out" >&2; _pg_err "openssl: could not create $cert"; return 1; }
    chmod 600 "$key"
    chmod 644 "$cert"
}

# ---------------------------------------------------------------------------
# Single cluster
# ---------------------------------------------------------------------------

_pg_conf_port() {
    local conf="$1/data/postgresql.conf" port
    port=$(sed -n 's/^port = \([0-9][0-9]*\).*/\1/p' "$conf" 2>/dev/null | tail -n 1)
    if [[ -z $port ]]; then
        _pg_err "no port setting in $conf"
        return 1
    fi
    printf '%s\n' "$port"
}

_pg_set_port() {
    local dir=$1 port=$2
    sed -i "s/^port = [0-9][0-9]*.*/port = $port/" "$dir/data/postgresql.conf"
}

_pg_is_running() {
    local dir=$1 bin
    [[ -f $dir/data/PG_VERSION ]] || return 1
    bin=$(pg_bin_dir) || return 1
    _pg_as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

# pg_cluster_init DIR PORT PASSWORD
pg_cluster_init() {
    local dir=$1 port=$2 password=$3
    local bin data sockpath
    bin=$(pg_bin_dir) || return 1
    case $dir in /*) ;; *) dir="$(pwd)/$dir" ;; esac
    data="$dir/data"
    if [[ $dir == *"'"* ]]; then
        _pg_err "pg_cluster_init: directory must not contain a single quote: $dir"
        return 1
    fi
    sockpath="$dir/sock/.s.PGSQL.$port"
    if ((${#sockpath} > 107)); then
        _pg_err "pg_cluster_init: unix socket path too long (${#sockpath} > 107): $sockpath"
        return 1
    fi
    if [[ -e $data/PG_VERSION ]]; then
        _pg_err "pg_cluster_init: $data is already initialised"
        return 1
    fi

    mkdir -p "$dir/data" "$dir/sock" "$dir/log"
    chmod 700 "$dir/data"
    _pg_chown -R postgres:postgres "$dir"
    if ! _pg_as_owner test -w "$dir/data" -a -w "$dir/sock"; then
        _pg_err "pg_cluster_init: user postgres cannot write to $dir (is a parent directory not traversable? try chmod 755 on it)"
        return 1
    fi

    local pwfile
    pwfile=$(mktemp "$dir/.pwfile.XXXXXX")
    printf '%s\n' "$password" >"$pwfile"
    _pg_chown postgres:postgres "$pwfile"
    chmod 600 "$pwfile"
    if ! _pg_as_owner "$bin/initdb" -D "$data" --username=postgres --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 --no-sync --no-instructions \
            >"$dir/log/initdb.log" 2>&1; then
        rm -f "$pwfile"
        cat "$dir/log/initdb.log" >&2
        _pg_err "pg_cluster_init: initdb failed for $data"
        return 1
    fi
    rm -f "$pwfile"

    _pg_make_cert "$data/server.crt" "$data/server.key" localhost || return 1
    _pg_chown postgres:postgres "$data/server.crt" "$data/server.key"

    cat >>"$data/postgresql.conf" <<EOF

# ---- pgclone throwaway test cluster ----
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
# the test suite runs hundreds of tests at once: 430 backends at its peak on two cores
max_connections = 1000
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF

    # First match wins.
    cat >"$data/pg_hba.conf" <<'EOF'
# TYPE  DATABASE     USER        ADDRESS          METHOD
local   all          all                          trust
host    all          auth_trust  127.0.0.1/32     trust
host    all          auth_clear  127.0.0.1/32     password
host    all          auth_md5    127.0.0.1/32     md5
host    all          +md5_login  127.0.0.1/32     md5
host    all          all         127.0.0.1/32     scram-sha-256
local   replication  all                          trust
host    replication  all         127.0.0.1/32     scram-sha-256
EOF
    _pg_chown postgres:postgres "$data/postgresql.conf" "$data/pg_hba.conf"
}

# pg_cluster_start DIR  (no-op if already running)
pg_cluster_start() {
    local dir=$1 bin
    bin=$(pg_bin_dir) || return 1
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        _pg_err "pg_cluster_start: $dir/data is not an initialised cluster"
        return 1
    fi
    if _pg_is_running "$dir"; then
        return 0
    fi
    mkdir -p "$dir/log"
    _pg_chown postgres:postgres "$dir/log"
    if ! _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log/postgresql.log" \
            -w -t 60 -s start >/dev/null 2>&1; then
        _pg_err "pg_cluster_start: could not start cluster $dir; last log lines:"
        tail -n 20 "$dir/log/postgresql.log" >&2 2>/dev/null || true
        return 1
    fi
}

# pg_cluster_stop DIR  (never fails when the cluster is not running / missing)
pg_cluster_stop() {
    local dir=$1 bin
    [[ -f $dir/data/PG_VERSION ]] || return 0
    bin=$(pg_bin_dir) || return 0
    _pg_is_running "$dir" || return 0
    if ! _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 -s stop >/dev/null 2>&1; then
        _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 -s stop >/dev/null 2>&1 || true
    fi
    return 0
}

# Init (if needed) and start a cluster; prints the port it listens on.
# _pg_cluster_up DIR FIXED_PORT_OR_EMPTY PASSWORD
_pg_cluster_up() {
    local dir=$1 fixed=$2 password=$3 port attempt
    if [[ -f $dir/data/PG_VERSION ]]; then
        port=$(_pg_conf_port "$dir") || return 1
        if [[ -n $fixed && $fixed != "$port" ]]; then
            pg_cluster_stop "$dir"
            port=$fixed
            _pg_set_port "$dir" "$port"
        fi
    else
        port=${fixed:-$(pg_free_port)}
        pg_cluster_init "$dir" "$port" "$password" || return 1
    fi
    for attempt in 1 2 3; do
        if pg_cluster_start "$dir"; then
            break
        fi
        if [[ -n $fixed || $attempt -eq 3 ]]; then
            return 1
        fi
        # Lost a race for a free port: pick another one.
        port=$(pg_free_port)
        _pg_set_port "$dir" "$port"
        _pg_err "retrying $dir on port $port"
    done
    # Reused clusters may have been created with another password.
    local pwsql
    pwsql=${password//\'/\'\'}
    _pg_psql_local "$dir" postgres -q -c "ALTER ROLE postgres PASSWORD '$pwsql'" >/dev/null || return 1
    printf '%s\n' "$port"
}

_pg_ensure_db() {
    local dir=$1 db=$2 exists
    exists=$(_pg_psql_local "$dir" postgres -At -c "SELECT 1 FROM pg_database WHERE datname = '$db'") || return 1
    if [[ $exists != 1 ]]; then
        _pg_psql_local "$dir" postgres -q -c "CREATE DATABASE \"$db\"" >/dev/null || return 1
        return 10   # created
    fi
}

# ---------------------------------------------------------------------------
# Source + target pair
# ---------------------------------------------------------------------------

# pg_setup_pair BASEDIR PASSWORD
# Fixed ports: PGCLONE_SETUP_SOURCE_PORT / PGCLONE_SETUP_TARGET_PORT (else free ports).
# Reuses already-initialised clusters (restarting them if stopped); seeds db1 only
# when test_schema is missing there.
pg_setup_pair() {
    local base=$1 password=$2
    mkdir -p "$base"
    base=$(cd "$base" && pwd)
    if ! _pg_as_owner test -x "$base"; then
        _pg_err "pg_setup_pair: user postgres cannot enter $base (chmod 755 it and its parents)"
        return 1
    fi
    local seed="$_PG_REPO_ROOT/test/fixtures/seed.sql"
    [[ -r $seed ]] || { _pg_err "pg_setup_pair: missing $seed"; return 1; }

    local sport tport rc
    sport=$(_pg_cluster_up "$base/source" "${PGCLONE_SETUP_SOURCE_PORT:-}" "$password") || return 1
    rc=0; _pg_ensure_db "$base/source" db1 || rc=$?
    [[ $rc -eq 0 || $rc -eq 10 ]] || return 1

    local seeded
    seeded=$(_pg_psql_local "$base/source" db1 -At -c \
        "SELECT 1 FROM pg_namespace WHERE nspname = 'test_schema'") || return 1
    if [[ $seeded != 1 ]]; then
        local out
        if ! out=$(PGCLONE_TEST_PASSWORD=$password pg_psql_super "$sport" db1 -q \
                     --single-transaction -f "$seed" 2>&1 >/dev/null); then
            printf '%s\n' "$out" >&2
            _pg_err "pg_setup_pair: loading $seed into db1 failed"
            return 1
        fi
        if [[ -n $out ]]; then printf '%s\n' "$out" >&2; fi
    fi

    tport=$(_pg_cluster_up "$base/target" "${PGCLONE_SETUP_TARGET_PORT:-}" "$password") || return 1
    rc=0; _pg_ensure_db "$base/target" db2 || rc=$?
    [[ $rc -eq 0 || $rc -eq 10 ]] || return 1

    mkdir -p "$base/proxy-tls"
    chmod 755 "$base/proxy-tls"
    if [[ ! -s $base/proxy-tls/server.crt || ! -s $base/proxy-tls/server.key ]]; then
        _pg_make_cert "$base/proxy-tls/server.crt" "$base/proxy-tls/server.key" localhost || return 1
    fi

    local bin
    bin=$(pg_bin_dir) || return 1
    local tmpenv="$base/env.tmp.$$"
    {
        echo "# generated by scripts/lib/pg.sh pg_setup_pair"
        printf 'export PGCLONE_TEST_HOST=%q\n' 127.0.0.1
        printf 'export PGCLONE_TEST_SOURCE_PORT=%q\n' "$sport"
        printf 'export PGCLONE_TEST_TARGET_PORT=%q\n' "$tport"
        printf 'export PGCLONE_TEST_PASSWORD=%q\n' "$password"
        printf 'export PGCLONE_TEST_SOURCE_SOCKET=%q\n' "$base/source/sock"
        printf 'export PGCLONE_TEST_TARGET_SOCKET=%q\n' "$base/target/sock"
        printf 'export PGCLONE_TEST_TLS_CERT=%q\n' "$base/proxy-tls/server.crt"
        printf 'export PGCLONE_TEST_TLS_KEY=%q\n' "$base/proxy-tls/server.key"
        printf 'export PGCLONE_TEST_DIR=%q\n' "$base"
        printf 'export PGCLONE_TEST_SOURCE_DB=%q\n' db1
        printf 'export PGCLONE_TEST_TARGET_DB=%q\n' db2
        printf 'export PGCLONE_TEST_SOURCE_CONNINFO=%q\n' \
            "host=127.0.0.1 port=$sport dbname=db1 user=postgres password=$password"
        printf 'export PGCLONE_TEST_TARGET_CONNINFO=%q\n' \
            "host=127.0.0.1 port=$tport dbname=db2 user=postgres password=$password"
        printf 'export PGCLONE_TEST_SOURCE_PGDATA=%q\n' "$base/source/data"
        printf 'export PGCLONE_TEST_TARGET_PGDATA=%q\n' "$base/target/data"
        printf 'export PGCLONE_TEST_SOURCE_LOG=%q\n' "$base/source/log/postgresql.log"
        printf 'export PGCLONE_TEST_TARGET_LOG=%q\n' "$base/target/log/postgresql.log"
        printf 'export PGCLONE_TEST_TARGET_SERVER_CERT=%q\n' "$base/target/data/server.crt"
        printf 'export PGCLONE_TEST_PG_BIN=%q\n' "$bin"
    } >"$tmpenv"
    chmod 600 "$tmpenv"
    mv -f "$tmpenv" "$base/env"
}

# pg_teardown BASEDIR: stop both clusters (files are left in place).
pg_teardown() {
    local base=$1
    pg_cluster_stop "$base/target"
    pg_cluster_stop "$base/source"
    return 0
}
