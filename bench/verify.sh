#!/usr/bin/env bash
# bench/verify.sh: how long it takes to prove a clone equal to its source, in one run:
#   (a) pgclone verify --mode checksum (hashes computed by each server, both at once)
#   (b) pgcopydb compare data's method (the pgcopydb of Debian 12, 0.10, has no compare command:
#       its query and schedule are replayed with psql; with a pgcopydb that has it,
#       BENCH_PGCOPYDB_COMPARE=1 runs the tool): per table, count(1) and
#       sum(hashtext((col1, col2, ...)::text)) under sha256, sent to source and target at once;
#       4 tables at a time (its --table-jobs default)
#   (c) count(*) of every table on both sides (psql, one side after the other)
#   (d) pgclone verify --mode checksum again after one row of the largest table changed
#       on the target (it must name that row's key)
# on the ~1.2 GB source of bench/clone.sh (pgbench -i -s $BENCH_SCALE plus public.wide),
# cloned once with pg_dump | psql. Prints seconds and the ratios the project tracks:
# (a)/(b) (goal <= 0.5) and (d)/(a) (goal < 1.3). Best of BENCH_ROUNDS (default 3), interleaved.
#
# Environment: BENCH_SCALE=60 BENCH_WIDE_ROWS=500000 BENCH_ROUNDS=3 BENCH_NO_BUILD=1 PGCLONE_BIN=...
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

SCALE=${BENCH_SCALE:-60}
WIDE_ROWS=${BENCH_WIDE_ROWS:-500000}
ROUNDS=${BENCH_ROUNDS:-3}

for tool in pgbench psql pg_dump ss awk openssl; do
    command -v "$tool" >/dev/null || bench_die "$tool not found"
done
[ "$(id -u)" -eq 0 ] || [ "$(id -un)" = postgres ] || bench_die "run as root (server tools then run as the postgres user) or as postgres"

bin=$(bench_pgclone_binary "$root")

work=$(mktemp -d /tmp/pgclone-verify-bench.XXXXXX)
chmod 755 "$work"
bench_trap_exit "$work/src/postgres.log" "$work/tgt/postgres.log"
SRC_PW=$(openssl rand -hex 12)
TGT_PW=$(openssl rand -hex 12)
unset PGHOST PGPORT PGSERVICE PGOPTIONS PGSSLMODE PGPASSWORD PGDATABASE
export PGUSER=postgres
src_port=$(bench_free_port)
tgt_port=$(bench_free_port)
while [ "$tgt_port" = "$src_port" ]; do tgt_port=$(bench_free_port); done
mkdir -p "$work/src" "$work/tgt"
for side in src tgt; do
    port=$src_port pw=$SRC_PW
    [ "$side" = tgt ] && { port=$tgt_port; pw=$TGT_PW; }
    bench_cluster_init "$work/$side" "$port" "$pw"
    printf '\nmax_wal_size = 32GB\ncheckpoint_timeout = 1h\nmaintenance_work_mem = 256MB\n' >> "$work/$side/data/postgresql.conf"
    bench_cluster_start "$work/$side"
done
{
    printf '*:%s:*:postgres:%s\n' "$src_port" "$SRC_PW"
    printf '*:%s:*:postgres:%s\n' "$tgt_port" "$TGT_PW"
} > "$work/pgpass"
chmod 600 "$work/pgpass"
export PGPASSFILE=$work/pgpass
src_sql() { psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$src_port" "$@"; }
tgt_sql() { psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$tgt_port" "$@"; }

DB=benchsrc
src_sql -d postgres -q -c "create database $DB"
bench_log "source: pgbench -i -s $SCALE and public.wide ($WIDE_ROWS rows)"
pgbench -i -q -I dtGvp -s "$SCALE" -h 127.0.0.1 -p "$src_port" "$DB" >"$work/pgbench-init.log" 2>&1 \
    || { cat "$work/pgbench-init.log" >&2; bench_die "pgbench -i failed"; }
src_sql -d "$DB" -q -v rows="$WIDE_ROWS" <<'SQL'
create table public.wide (id bigint primary key, code text not null, t text, j jsonb not null, n numeric(14,4) not null, created timestamptz not null);
insert into public.wide
select i, 'C' || lpad((i % 10000)::text, 5, '0'), case when i % 97 = 0 then null else md5(i::text) || md5((i * 7)::text) end,
       jsonb_build_object('id', i, 'name', md5((i * 3)::text), 'tags', jsonb_build_array('a' || i % 13, 'b' || i % 29)),
       round(((i * 7919) % 1000003)::numeric / 97.0, 4), timestamptz '2024-01-01 00:00:00+00' + (i % 100000) * interval '37 seconds'
from generate_series(1::bigint, :rows) as i;
vacuum analyze;
SQL
bench_log "source: $(src_sql -d postgres -c "select pg_size_pretty(pg_database_size('$DB'))"); cloning with pg_dump | psql"
tgt_sql -d postgres -q -c "create database $DB"
pg_dump -h 127.0.0.1 -p "$src_port" "$DB" | psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$tgt_port" -d "$DB" >/dev/null
tgt_sql -d "$DB" -q -c "vacuum analyze"

SRC_CONNINFO="host=127.0.0.1 port=$src_port dbname=$DB user=postgres password=$SRC_PW"
TGT_CONNINFO="host=127.0.0.1 port=$tgt_port dbname=$DB user=postgres password=$TGT_PW"
SRC_URI="postgresql://postgres:$SRC_PW@127.0.0.1:$src_port/$DB"
TGT_URI="postgresql://postgres:$TGT_PW@127.0.0.1:$tgt_port/$DB"
TABLES=$(src_sql -d "$DB" -c "select string_agg(format('%I.%I', schemaname, relname), ' ') from pg_stat_user_tables")

# seconds CMD...: runs CMD, prints elapsed seconds; output in $work/last.log. A failing CMD
# stops the bench, except that `pgclone verify` exits 1 when it finds a difference (expected in (d)).
seconds() {
    local a b rc=0
    a=$(date +%s.%N)
    "$@" >"$work/last.log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ] && ! { [ "$rc" -eq 1 ] && grep -q "^DIFFERENT: " "$work/last.log"; }; then
        cat "$work/last.log" >&2
        bench_die "$1 failed"
    fi
    b=$(date +%s.%N)
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b - a }'
}
counts() {
    for t in $TABLES; do src_sql -d "$DB" -c "select count(*) from $t" >/dev/null; done
    for t in $TABLES; do tgt_sql -d "$DB" -c "select count(*) from $t" >/dev/null; done
}
# pgcopydb's query for one table: the row of its columns as text, hashed and summed.
pgcopydb_query() {
    local cols
    cols=$(src_sql -d "$DB" -c "select string_agg(quote_ident(attname), ', ' order by attnum) from pg_attribute where attrelid = '$1'::regclass and attnum > 0 and not attisdropped")
    printf "select count(1) as cnt, encode(sha256(format('%%s-%%s', sum(hashtext((%s)::text)::bigint), count(1))::bytea), 'hex') as chksum from only %s" "$cols" "$1"
}
declare -A PGCOPYDB_SQL
for t in $TABLES; do PGCOPYDB_SQL[$t]=$(pgcopydb_query "$t"); done
# One table: source and target at once, as pgcopydb's compare worker does.
compare_table() {
    local sql=${PGCOPYDB_SQL[$1]}
    src_sql -d "$DB" -c "$sql" >/dev/null &
    local a=$!
    tgt_sql -d "$DB" -c "$sql" >/dev/null
    wait "$a"
}
hashsums() {
    local running=0
    for t in $TABLES; do
        compare_table "$t" &
        running=$((running + 1))
        if [ "$running" -ge 4 ]; then wait -n; running=$((running - 1)); fi
    done
    wait
}
best() { printf '%s\n' "$@" | sort -g | head -n 1; }

A=(); B=(); C=(); D=()
for round in $(seq 1 "$ROUNDS"); do
    bench_log "round $round"
    A+=("$(seconds "$bin" verify --mode checksum --source "$SRC_CONNINFO" --target "$TGT_CONNINFO")")
    grep -q "^OK: " "$work/last.log" || bench_die "verify of identical databases did not say OK: $(cat "$work/last.log")"
    if [ "${BENCH_PGCOPYDB_COMPARE:-0}" = 1 ]; then
        rm -rf "$work/pgcopydb"
        B+=("$(seconds env -u PGPASSFILE pgcopydb compare data --dir "$work/pgcopydb" --source "$SRC_URI" --target "$TGT_URI")")
    else
        B+=("$(seconds hashsums)")
    fi
    C+=("$(seconds counts)")
    tgt_sql -d "$DB" -q -c "update public.pgbench_accounts set filler = 'changed' where aid = 4242424"
    D+=("$(seconds "$bin" verify --mode checksum --source "$SRC_CONNINFO" --target "$TGT_CONNINFO")")
    grep -q "1 row differs at aid 4242424" "$work/last.log" || bench_die "the changed row was not named: $(cat "$work/last.log")"
    tgt_sql -d "$DB" -q -c "update public.pgbench_accounts t set filler = s.filler from (select filler from public.pgbench_accounts where aid = 4241) s where t.aid = 4242424"
done
a=$(best "${A[@]}"); b=$(best "${B[@]}"); c=$(best "${C[@]}"); d=$(best "${D[@]}")
printf '\n%-46s %8s  %s\n' method seconds "rounds"
printf '%-46s %8s  %s\n' "pgclone verify --mode checksum (identical)" "$a" "${A[*]}"
printf '%-46s %8s  %s\n' "pgcopydb compare data (its query)" "$b" "${B[*]}"
printf '%-46s %8s  %s\n' "count(*) on both sides" "$c" "${C[*]}"
printf '%-46s %8s  %s\n' "pgclone verify --mode checksum (1 row changed)" "$d" "${D[*]}"
awk -v a="$a" -v b="$b" -v d="$d" 'BEGIN { printf "\nchecksum verify / pgcopydb compare data = %.2f (goal <= 0.50)\nwith one changed row / identical = %.2f (goal < 1.30)\n", a / b, d / a }'
