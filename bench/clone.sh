#!/usr/bin/env bash
# bench/clone.sh: wall time of cloning a ~1.2 GB database with pgclone, next to
# pg_dump | psql, pg_dump -Fd -j2 + pg_restore -j2, and pgcopydb clone (its table
# splitting on). The source's pgbench_accounts (6M rows at scale 60) dominates it.
#
# One run, two throwaway clusters (SOURCE and TARGET, same settings):
#   1. build pgclone (release) unless BENCH_NO_BUILD=1
#   2. initdb + start SOURCE and TARGET (loopback only, scram-sha-256, own passwords)
#   3. SOURCE database benchsrc: pgbench -i -s $BENCH_SCALE plus public.wide
#      ($BENCH_WIDE_ROWS rows of text, jsonb, numeric; 5 indexes including the primary key)
#   4. pgclone serve in front of TARGET
#   5. each method clones benchsrc into a fresh TARGET database, timed; row counts,
#      checksums and index counts are compared with the source; the database is dropped
#   6. table: method, seconds, ratio to pgcopydb; pgclone.schema_async / the fastest of
#      pgcopydb and pg_dump | psql (goal <= 0.60); the dominant table (pgbench_accounts) cloned
#      alone, split / unsplit (goal: >= 1.25x faster), next to the most any split can gain on
#      this machine: one psql COPY stream of that table against two at once (stream_one,
#      stream_two: pg_dump-free pipes, no pgclone)
# Everything started here is stopped on exit, success or not.
#
# Environment (all optional):
#   BENCH_SCALE=60  BENCH_WIDE_ROWS=500000  BENCH_PARALLEL=2 (pgclone "parallel", -j, --*-jobs)
#   BENCH_ROUNDS=1 (each method this many times, interleaved; the table shows the fastest)
#   BENCH_METHODS="schema_async table_split table_unsplit stream_one stream_two schema database_create
#      dump_psql dump_restore pgcopydb" (run in this order; table_split / table_unsplit:
#      pgclone.table_async of pgbench_accounts alone, split_larger_than 64MB / 1TB)
#   BENCH_PGCOPYDB_SPLIT=128MB (pgcopydb --split-tables-larger-than)
#   BENCH_WARMUP=1 (one untimed pg_dump | psql first, so no method pays for cold WAL/caches)
#   BENCH_PORT_RANGE=20000-29999  BENCH_KEEP_WORKDIR=1
#   BENCH_NO_BUILD=1 (use PGCLONE_BIN, default .build/release/pgclone)
#   BENCH_PGCLONE_ARGS="..." (extra arguments for pgclone serve)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

SCALE=${BENCH_SCALE:-60}
WIDE_ROWS=${BENCH_WIDE_ROWS:-500000}
PAR=${BENCH_PARALLEL:-2}
ROUNDS=${BENCH_ROUNDS:-1}
METHODS=${BENCH_METHODS:-schema_async table_split table_unsplit stream_one stream_two dump_psql dump_restore pgcopydb}
SPLIT=${BENCH_PGCOPYDB_SPLIT:-128MB}

for tool in pgbench psql createdb pg_dump pg_restore ss awk openssl; do
    command -v "$tool" >/dev/null || bench_die "$tool not found"
done
[ "$(id -u)" -eq 0 ] || [ "$(id -un)" = postgres ] || bench_die "run as root (server tools then run as the postgres user) or as postgres"

# --- 1. build ---------------------------------------------------------------
bin=$(bench_pgclone_binary "$root")

# --- 2. clusters --------------------------------------------------------------
work=$(mktemp -d /tmp/pgclone-clone-bench.XXXXXX)
chmod 755 "$work"   # the postgres user must reach $work/src and $work/tgt
CHILD=""            # the timed command currently running, if any
bench_trap_exit "$work/pgclone.log" "$work/src/postgres.log" "$work/tgt/postgres.log"

SRC_PW=$(openssl rand -hex 12)
TGT_PW=$(openssl rand -hex 12)
unset PGHOST PGPORT PGSERVICE PGOPTIONS PGSSLMODE PGPASSWORD PGDATABASE
export PGUSER=postgres

src_port=$(bench_free_port)
tgt_port=$(bench_free_port)
while [ "$tgt_port" = "$src_port" ]; do tgt_port=$(bench_free_port); done
mkdir -p "$work/src" "$work/tgt"

# Settings appended to both clusters (after bench/lib.sh's block: fsync=off,
# synchronous_commit=off, full_page_writes=off, shared_buffers=256MB).
EXTRA_CONF="max_wal_size = 32GB
min_wal_size = 1GB
checkpoint_timeout = 1h
maintenance_work_mem = 256MB"

for side in src tgt; do
    port=$src_port pw=$SRC_PW
    [ "$side" = tgt ] && { port=$tgt_port; pw=$TGT_PW; }
    bench_log "initdb $side in $work/$side (port $port)"
    bench_cluster_init "$work/$side" "$port" "$pw"
    printf '\n# --- bench/clone.sh ---\n%s\n' "$EXTRA_CONF" >> "$work/$side/data/postgresql.conf"
    bench_cluster_start "$work/$side"
done

# Client passwords through a private pgpass (port decides which one; the proxy port
# carries target credentials, since clients authenticate end to end against TARGET).
proxy_port=$(bench_free_port)
while [ "$proxy_port" = "$src_port" ] || [ "$proxy_port" = "$tgt_port" ]; do proxy_port=$(bench_free_port); done
{
    printf '*:%s:*:postgres:%s\n' "$src_port" "$SRC_PW"
    printf '*:%s:*:postgres:%s\n' "$tgt_port" "$TGT_PW"
    printf '*:%s:*:postgres:%s\n' "$proxy_port" "$TGT_PW"
} > "$work/pgpass"
chmod 600 "$work/pgpass"
export PGPASSFILE=$work/pgpass

src_sql() { psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$src_port" "$@"; }
tgt_sql() { psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$tgt_port" "$@"; }

settings_line() {
    tgt_sql -d postgres -c "select string_agg(name || '=' || current_setting(name), ' ' order by name)
        from pg_settings where name in ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers',
        'max_wal_size', 'maintenance_work_mem', 'wal_level', 'autovacuum', 'checkpoint_timeout')"
}

# --- 3. source database ---------------------------------------------------------
SRC_DB=benchsrc
src_sql -d postgres -q -c "create database $SRC_DB"
bench_log "source: pgbench -i -s $SCALE (server-side generation)"
t0=$(date +%s.%N)
pgbench -i -q -I dtGvp -s "$SCALE" -h 127.0.0.1 -p "$src_port" "$SRC_DB" >"$work/pgbench-init.log" 2>&1 \
    || { cat "$work/pgbench-init.log" >&2; bench_die "pgbench -i failed"; }
bench_log "source: public.wide with $WIDE_ROWS rows and 5 indexes"
src_sql -d "$SRC_DB" -q -v rows="$WIDE_ROWS" <<'SQL' >"$work/wide.log" 2>&1 || { cat "$work/wide.log" >&2; bench_die "creating public.wide failed"; }
create table public.wide (
    id       bigint primary key,
    code     text not null,
    t        text,
    j        jsonb not null,
    n        numeric(14,4) not null,
    created  timestamptz not null
);
insert into public.wide
select i,
       'C' || lpad((i % 10000)::text, 5, '0'),
       case when i % 97 = 0 then null else md5(i::text) || md5((i * 7)::text) end,
       jsonb_build_object('id', i, 'name', md5((i * 3)::text), 'tags', jsonb_build_array('a' || i % 13, 'b' || i % 29),
                          'score', (i % 1000) / 7.0, 'active', i % 2 = 0),
       round(((i * 7919) % 1000003)::numeric / 97.0, 4),
       timestamptz '2024-01-01 00:00:00+00' + (i % 100000) * interval '37 seconds'
from generate_series(1::bigint, :rows) as i;
create index wide_code_created_idx on public.wide (code, created);
create index wide_t_idx on public.wide (t);
create index wide_n_idx on public.wide (n);
create index wide_j_idx on public.wide using gin (j jsonb_path_ops);
vacuum analyze public.wide;
SQL
t1=$(date +%s.%N)
src_size=$(src_sql -d postgres -c "select pg_database_size('$SRC_DB')")
src_size_h=$(src_sql -d postgres -c "select pg_size_pretty(pg_database_size('$SRC_DB'))")
wide_size_h=$(src_sql -d "$SRC_DB" -c "select pg_size_pretty(pg_table_size('public.wide')) || ' heap+toast, ' || pg_size_pretty(pg_indexes_size('public.wide')) || ' indexes'")
bench_log "source built in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s: $SRC_DB = $src_size_h ($src_size bytes); wide: $wide_size_h"

SRC_CONNINFO="host=127.0.0.1 port=$src_port dbname=$SRC_DB user=postgres password=$SRC_PW"
SRC_URI="postgresql://postgres:$SRC_PW@127.0.0.1:$src_port/$SRC_DB"
tgt_uri() { echo "postgresql://postgres:$TGT_PW@127.0.0.1:$tgt_port/$1"; }

# The fingerprint compared between source and every clone.
FINGERPRINT_SQL="select concat_ws(' | ',
  (select format('accounts count=%s sum(abalance)=%s sum(aid*bid)=%s', count(*), sum(abalance), sum(aid::bigint * bid)) from public.pgbench_accounts),
  (select format('branches=%s tellers=%s history=%s', (select count(*) from public.pgbench_branches),
                 (select count(*) from public.pgbench_tellers), (select count(*) from public.pgbench_history))),
  (select format('wide count=%s md5=%s', count(*),
                 md5(string_agg(id::text || ':' || code || ':' || coalesce(t, '~') || ':' || j::text || ':' || n::text || ':' || created::text, ',' order by id)))
     from public.wide),
  (select format('indexes=%s constraints=%s', (select count(*) from pg_indexes where schemaname = 'public'),
                 (select count(*) from pg_constraint c join pg_namespace s on s.oid = c.connamespace where s.nspname = 'public'))))"
# The dominant table alone (table_split, table_unsplit, stream_one, stream_two), under the name each gives it.
accounts_sql() { echo "select format('count=%s sum(abalance)=%s sum(aid*bid)=%s', count(*), sum(abalance), sum(aid::bigint * bid)) from $1"; }
SRC_ACCOUNTS=$(src_sql -d "$SRC_DB" -c "$(accounts_sql public.pgbench_accounts)")
bench_log "source fingerprint"
SRC_FP=$(src_sql -d "$SRC_DB" -c "$FINGERPRINT_SQL")
bench_log "  $SRC_FP"

# --- 4. pgclone in front of TARGET -----------------------------------------------
bench_log "starting pgclone on 127.0.0.1:$proxy_port in front of TARGET (port $tgt_port)"
# shellcheck disable=SC2086 # BENCH_PGCLONE_ARGS is a word list on purpose
(cd "$root" && exec env -u PGPASSFILE -u PGUSER "$bin" serve --listen "127.0.0.1:$proxy_port" \
    --backend "host=127.0.0.1 port=$tgt_port dbname=postgres user=postgres password=$TGT_PW" \
    ${BENCH_PGCLONE_ARGS:-}) >"$work/pgclone.log" 2>&1 &
pgclone_pid=$!
bench_track "$pgclone_pid"
bench_wait_port "$proxy_port" 60 "$pgclone_pid" || bench_die "pgclone did not start listening"
got=$(psql -X -At -h 127.0.0.1 -p "$proxy_port" -d postgres -c "select 'through-pgclone'" 2>&1) || true
[ "$got" = through-pgclone ] || bench_die "query through pgclone failed: $got"
bench_log "pgclone version: $(psql -X -At -h 127.0.0.1 -p "$proxy_port" -d postgres -c "select pgclone.version()" 2>&1)"

# --- 5. methods ---------------------------------------------------------------------
declare -A SECS CHECK NOTE ALL FAILED
ORDER=()

# add_time METHOD SECONDS: one more successful round; SECS keeps the fastest.
add_time() {
    ALL[$1]="${ALL[$1]:+${ALL[$1]} }$2"
    if [ -z "${SECS[$1]:-}" ] || awk -v a="$2" -v b="${SECS[$1]}" 'BEGIN { exit !(a < b) }'; then
        SECS[$1]=$2
    fi
}
# set_check METHOD STATUS: MATCH never overrides an earlier MISMATCH or FAILED.
set_check() {
    case ${CHECK[$1]:-} in MISMATCH | FAILED) return 0 ;; esac
    CHECK[$1]=$2
}
ERRORS=()

# timed LOGFILE CMD...: run CMD (own process group, so a TERM trap can stop it),
# output to LOGFILE; sets ELAPSED; returns CMD's status.
timed() {
    local log=$1 rc=0 a b
    shift
    a=$(date +%s.%N)
    set -m
    "$@" >"$log" 2>&1 &
    CHILD=$!
    set +m
    wait "$CHILD" || rc=$?
    CHILD=""
    b=$(date +%s.%N)
    ELAPSED=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b - a }')
    return "$rc"
}

fresh_db() { drop_db "$1"; tgt_sql -d postgres -q -c "create database $1"; }
drop_db() {
    tgt_sql -d postgres -q -c "set client_min_messages = warning" -c "drop database if exists $1 with (force)" \
        || bench_log "could not drop $1"
}

# check METHOD DB: compare the fingerprint of DB on TARGET with the source's.
check() {
    local m=$1 db=$2 fp
    fp=$(tgt_sql -d "$db" -c "$FINGERPRINT_SQL" 2>&1) || true
    if [ "$fp" = "$SRC_FP" ]; then
        set_check "$m" MATCH
    else
        set_check "$m" MISMATCH
        ERRORS+=("$m: fingerprint MISMATCH
    source: $SRC_FP
    target: $fp")
    fi
    bench_log "  $m: ${CHECK[$m]}"
}

# record_failure METHOD LOGFILE WHAT
record_failure() {
    local m=$1 log=$2 what=$3
    FAILED[$m]=1
    CHECK[$m]=FAILED
    NOTE[$m]="$what failed after ${ELAPSED}s"
    ERRORS+=("$m: $what failed after ${ELAPSED}s:
$(tail -n 30 "$log" | sed 's/^/    /')")
    if ! kill -0 "$pgclone_pid" 2>/dev/null || grep -q 'shutting down' "$work/pgclone.log"; then
        ERRORS+=("pgclone (pid $pgclone_pid) stopped during the run (a signal from outside?); its log ends:
$(tail -n 5 "$work/pgclone.log" | cut -c1-300 | sed 's/^/    /')")
    fi
    bench_log "  $m FAILED: $(tail -n 3 "$log" | tr '\n' ' ')"
}

pre_run() { tgt_sql -d postgres -q -c checkpoint; src_sql -d postgres -q -c checkpoint; sync; }

run_schema() {
    local m=schema db=bench_schema log=$work/m-schema.log
    fresh_db "$db"; pre_run
    bench_log "(a) pgclone.schema('<source>', 'public', true, '{\"parallel\": $PAR}') via proxy into $db"
    if timed "$log" psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$proxy_port" -d "$db" \
        -c "SELECT pgclone.schema('$SRC_CONNINFO', 'public', true, '{\"parallel\": $PAR}')"; then
        add_time "$m" "$ELAPSED"
        NOTE[$m]=$(tr '\n' ' ' <"$log" | cut -c1-200)
        bench_log "  ${ELAPSED}s: ${NOTE[$m]}"
        check "$m" "$db"
    else
        record_failure "$m" "$log" "pgclone.schema"
    fi
    drop_db "$db"
}

# run_job METHOD CALL CHECK: CALL (an *_async function) through the proxy into a fresh
# database, timed from the call to the job's end (async_job); then CHECK METHOD DB.
run_job() {
    local m=$1 call=$2 check_fn=$3 db=bench_$1 log=$work/m-$1.log
    fresh_db "$db"; pre_run
    bench_log "${call/"$SRC_CONNINFO"/<source>} via proxy into $db"
    if timed "$log" async_job "$db" "$call"; then
        add_time "$m" "$ELAPSED"
        NOTE[$m]=$(grep -o 'copied in [0-9]* parts at once' "$log" | head -n 1 || true)
        NOTE[$m]=${NOTE[$m]:-"no table split"}
        bench_log "  ${ELAPSED}s: ${NOTE[$m]}"
        "$check_fn" "$m" "$db"
    else
        record_failure "$m" "$log" "${call%%(*}"
    fi
    drop_db "$db"
}
run_schema_async() { run_job schema_async "SELECT pgclone.schema_async('$SRC_CONNINFO', 'public', true, '{\"parallel\": $PAR}')" check; }

# async_job DB CALL: runs CALL (an *_async function) through the proxy, then waits for the job
# to end. One psql session polls every 0.1 s and leaves \watch through the division by zero
# once the job has ended: a psql started per poll (perl wrapper, process start, a backend and
# SCRAM authentication each time) cost more CPU than a whole poll, on the cores the clone uses.
async_job() {
    local db=$1 call=$2 id status
    id=$(psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$proxy_port" -d "$db" -c "$call") || return 1
    printf '%s\n' "SELECT 1 / (status IN ('pending', 'running'))::int FROM pgclone.jobs_view WHERE job_id = $id \\watch 0.1" \
        | psql -X -At -h 127.0.0.1 -p "$proxy_port" -d "$db" >/dev/null 2>&1 || true
    status=$(psql -X -At -h 127.0.0.1 -p "$proxy_port" -d "$db" -c "SELECT status FROM pgclone.jobs_view WHERE job_id = $id") || return 1
    psql -X -At -h 127.0.0.1 -p "$proxy_port" -d "$db" -c "SELECT pgclone.progress($id)"
    [ "$status" = completed ]
}

# check_accounts METHOD DB TABLE: the dominant table's fingerprint against the source's.
check_accounts() {
    local m=$1 db=$2 table=$3 fp
    fp=$(tgt_sql -d "$db" -c "$(accounts_sql "$table")" 2>&1) || true
    if [ "$fp" = "$SRC_ACCOUNTS" ]; then
        set_check "$m" MATCH
    else
        set_check "$m" MISMATCH
        ERRORS+=("$m: $table MISMATCH
    source: $SRC_ACCOUNTS
    target: $fp")
    fi
    bench_log "  $m: ${CHECK[$m]}"
}

# run_table METHOD SPLIT: pgclone.table_async of pgbench_accounts alone, split_larger_than SPLIT.
run_table() {
    run_job "$1" "SELECT pgclone.table_async('$SRC_CONNINFO', 'public', 'pgbench_accounts', true, NULL, '{\"parallel\": $PAR, \"split_larger_than\": \"$2\"}')" check_table
}
check_table() { check_accounts "$1" "$2" public.pgbench_accounts; }
run_table_split() { run_table table_split 64MB; }
run_table_unsplit() { run_table table_unsplit 1TB; }

# The ceiling of splitting on this machine, without pgclone: psql pipes of binary COPY of the
# dominant table into a new table, one stream against two at once (each half its heap pages).
stream_into() { # stream_into DB PREDICATE
    psql -X -q -h 127.0.0.1 -p "$src_port" -d "$SRC_DB" \
        -c "COPY (SELECT * FROM ONLY public.pgbench_accounts WHERE $2) TO STDOUT (FORMAT binary)" \
        | psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$tgt_port" -d "$1" -c "COPY public.streamed FROM STDIN (FORMAT binary)"
}
streams() { # streams DB COUNT
    if [ "$2" = 1 ]; then stream_into "$1" true; return; fi
    local half rc=0 pid
    half=$(src_sql -d "$SRC_DB" -c "select pg_relation_size('public.pgbench_accounts') / 8192 / 2")
    stream_into "$1" "ctid < '($half,0)'" & pid=$!
    stream_into "$1" "ctid >= '($half,0)'" || rc=$?
    wait "$pid" || rc=$?
    return "$rc"
}
run_stream() { # run_stream METHOD COUNT
    local m=$1 db=bench_$1 log=$work/m-$1.log
    fresh_db "$db"
    tgt_sql -d "$db" -q -c "create table public.streamed (aid integer not null, bid integer, abalance integer, filler character(84))"
    pre_run
    bench_log "psql COPY pipes of pgbench_accounts, $2 at once, into $db"
    if timed "$log" streams "$db" "$2"; then
        add_time "$m" "$ELAPSED"
        NOTE[$m]="no pgclone: binary COPY through psql, $2 stream(s), no index"
        bench_log "  ${ELAPSED}s"
        check_accounts "$m" "$db" public.streamed
    else
        record_failure "$m" "$log" "psql COPY pipe"
    fi
    drop_db "$db"
}
run_stream_one() { run_stream stream_one 1; }
run_stream_two() { run_stream stream_two 2; }

run_database_create() {
    local m=database_create db=bench_dbcreate log=$work/m-dbcreate.log
    drop_db "$db"; pre_run
    bench_log "(b) pgclone.database_create('<source>', '$db', true, '{\"parallel\": $PAR}') via proxy (connected to postgres)"
    if timed "$log" psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$proxy_port" -d postgres \
        -c "SELECT pgclone.database_create('$SRC_CONNINFO', '$db', true, '{\"parallel\": $PAR}')"; then
        add_time "$m" "$ELAPSED"
        NOTE[$m]=$(tr '\n' ' ' <"$log" | cut -c1-200)
        bench_log "  ${ELAPSED}s: ${NOTE[$m]}"
        check "$m" "$db"
    else
        record_failure "$m" "$log" "pgclone.database_create"
    fi
    drop_db "$db"
}

dump_psql() {
    pg_dump -h 127.0.0.1 -p "$src_port" -d "$SRC_DB" \
        | psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$tgt_port" -d "$1"
}
run_dump_psql() {
    local m=dump_psql db=bench_dump_psql log=$work/m-dump-psql.log
    fresh_db "$db"; pre_run
    bench_log "(c) pg_dump $SRC_DB | psql $db"
    if timed "$log" dump_psql "$db"; then
        add_time "$m" "$ELAPSED"
        NOTE[$m]="plain dump, single stream"
        bench_log "  ${ELAPSED}s"
        check "$m" "$db"
    else
        record_failure "$m" "$log" "pg_dump | psql"
    fi
    drop_db "$db"
}

dump_restore() {
    local dir=$work/dumpdir
    rm -rf "$dir"
    pg_dump -h 127.0.0.1 -p "$src_port" -d "$SRC_DB" -Fd -j "$PAR" -f "$dir" || return 1
    local a; a=$(date +%s.%N)
    echo "dump finished at +$(awk -v a="$DR_START" -v b="$a" 'BEGIN { printf "%.2f", b - a }')s"
    pg_restore -h 127.0.0.1 -p "$tgt_port" -d "$1" -j "$PAR" --exit-on-error "$dir" || return 1
    rm -rf "$dir"
}
run_dump_restore() {
    local m=dump_restore db=bench_dump_restore log=$work/m-dump-restore.log
    fresh_db "$db"; pre_run
    bench_log "(d) pg_dump -Fd -j$PAR + pg_restore -j$PAR into $db"
    DR_START=$(date +%s.%N)
    if timed "$log" dump_restore "$db"; then
        add_time "$m" "$ELAPSED"
        local dump_s; dump_s=$(sed -n 's/^dump finished at +\([0-9.]*\)s$/\1/p' "$log")
        NOTE[$m]="dump ${dump_s}s + restore $(awk -v t="$ELAPSED" -v d="$dump_s" 'BEGIN { printf "%.2f", t - d }')s"
        bench_log "  ${ELAPSED}s (${NOTE[$m]})"
        check "$m" "$db"
    else
        record_failure "$m" "$log" "pg_dump -Fd | pg_restore"
    fi
    rm -rf "$work/dumpdir"
    drop_db "$db"
}

run_pgcopydb() {
    local m=pgcopydb db=bench_pgcopydb log=$work/m-pgcopydb.log
    if ! command -v pgcopydb >/dev/null; then
        SECS[$m]=""; CHECK[$m]=SKIPPED; NOTE[$m]="pgcopydb not installed"
        ERRORS+=("pgcopydb: not installed (apt-get install pgcopydb)")
        return 0
    fi
    fresh_db "$db"; pre_run
    rm -rf "$work/pgcopydb"
    bench_log "(e) pgcopydb clone --table-jobs $PAR --index-jobs $PAR --split-tables-larger-than $SPLIT into $db"
    if timed "$log" pgcopydb clone --source "$SRC_URI" --target "$(tgt_uri "$db")" \
        --table-jobs "$PAR" --index-jobs "$PAR" --split-tables-larger-than "$SPLIT" --dir "$work/pgcopydb" --no-owner --no-acl; then
        add_time "$m" "$ELAPSED"
        NOTE[$m]="$(pgcopydb --version 2>&1 | sed -n 's/.*Running pgcopydb version \([^ ]*\).*/pgcopydb \1/p' | head -n 1)"
        bench_log "  ${ELAPSED}s"
        check "$m" "$db"
    else
        record_failure "$m" "$log" "pgcopydb clone"
    fi
    rm -rf "$work/pgcopydb"
    drop_db "$db"
}

# Untimed warm-up: whichever method ran first used to pay ~2 s (~20%) more, probably for
# the target's first gigabytes of WAL (new segment files instead of recycled ones) and
# cold caches. One pg_dump | psql into a scratch database evens that out.
if [ "${BENCH_WARMUP:-1}" = 1 ]; then
    bench_log "warm-up (untimed): pg_dump | psql into bench_warmup"
    fresh_db bench_warmup
    timed "$work/warmup.log" dump_psql bench_warmup || { cat "$work/warmup.log" >&2; bench_die "warm-up failed"; }
    bench_log "  warm-up took ${ELAPSED}s"
    drop_db bench_warmup
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for m in $METHODS; do   # in the order given
    case $m in
        schema | schema_async | table_split | table_unsplit | stream_one | stream_two | database_create | dump_psql | dump_restore | pgcopydb) ORDER+=("$m") ;;
        *) bench_die "unknown method in BENCH_METHODS: $m" ;;
    esac
done
for round in $(seq 1 "$ROUNDS"); do   # rounds interleave methods, so load drift hits all alike
    if [ "$ROUNDS" -gt 1 ]; then bench_log "round $round of $ROUNDS"; fi
    for m in "${ORDER[@]}"; do
        "run_$m"
    done
done
for m in "${ORDER[@]}"; do   # a method that failed in any round has no time
    if [ -n "${FAILED[$m]:-}" ]; then SECS[$m]=""; fi
done

# --- 6. report -----------------------------------------------------------------------
ratio() { # ratio A B: A/B with two decimals, "-" when either is missing
    if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo "-"; fi
}
label() {
    case $1 in
        schema)          echo "pgclone.schema (parallel $PAR)" ;;
        schema_async)    echo "pgclone.schema_async (parallel $PAR)" ;;
        table_split)     echo "accounts alone: table_async, split" ;;
        table_unsplit)   echo "accounts alone: table_async, whole" ;;
        stream_one)      echo "accounts alone: 1 psql COPY stream" ;;
        stream_two)      echo "accounts alone: 2 psql COPY streams" ;;
        database_create) echo "pgclone.database_create (parallel $PAR)" ;;
        dump_psql)       echo "pg_dump | psql" ;;
        dump_restore)    echo "pg_dump -Fd -j$PAR + pg_restore -j$PAR" ;;
        pgcopydb)        echo "pgcopydb clone (jobs $PAR, split $SPLIT)" ;;
    esac
}

pgclone_errors=$(grep -iE 'error|fatal|panic|fail' "$work/pgclone.log" | grep -v 'reason=client' | tail -n 20 || true)

echo
echo "==================== clone benchmark ===================="
echo "source $SRC_DB: $src_size_h ($src_size bytes): pgbench scale $SCALE + public.wide $WIDE_ROWS rows ($wide_size_h)"
echo "$(nproc) cores (clients, proxy and both servers share them); load average before the runs: $load_before"
echo "both clusters: $(settings_line)"
echo "NOTE: fsync=off, synchronous_commit=off, full_page_writes=off on SOURCE and TARGET (durability off for every method alike)"
echo
if [ "$ROUNDS" -gt 1 ]; then echo "$ROUNDS rounds, interleaved; seconds = fastest round (all rounds in the note)"; fi
printf '%-42s %10s %9s %-9s %s\n' method seconds "/pgcopydb" check note
for m in "${ORDER[@]}"; do
    s=${SECS[$m]:-}
    note=${NOTE[$m]:-}
    if [ "$ROUNDS" -gt 1 ]; then note="rounds: ${ALL[$m]:-none}; $note"; fi
    printf '%-42s %10s %9s %-9s %s\n' "$(label "$m")" "${s:--}" "$(ratio "$s" "${SECS[pgcopydb]:-}")" \
        "${CHECK[$m]:-}" "$note"
done
echo
fastest_ref=""
for m in pgcopydb dump_psql; do
    s=${SECS[$m]:-}
    if [ -n "$s" ] && { [ -z "$fastest_ref" ] || awk -v a="$s" -v b="$fastest_ref" 'BEGIN { exit !(a < b) }'; }; then fastest_ref=$s; fi
done
echo "pgclone.schema_async / fastest of pgcopydb and pg_dump | psql = $(ratio "${SECS[schema_async]:-}" "$fastest_ref") (goal <= 0.60)"
echo "split speed-up, pgbench_accounts alone: whole / split = $(ratio "${SECS[table_unsplit]:-}" "${SECS[table_split]:-}") (goal >= 1.25)"
echo "  ceiling on this machine, without pgclone: 1 stream / 2 streams = $(ratio "${SECS[stream_one]:-}" "${SECS[stream_two]:-}")"
if [ "${#ERRORS[@]}" -gt 0 ]; then
    echo
    echo "problems:"
    for e in "${ERRORS[@]}"; do printf '  %s\n' "$e"; done
fi
if [ -n "$pgclone_errors" ]; then
    echo
    echo "pgclone log lines mentioning errors:"
    printf '%s\n' "$pgclone_errors" | sed 's/^/  /'
fi
echo "========================================================="
if [ "${#ERRORS[@]}" -gt 0 ]; then exit 1; fi
