#!/usr/bin/env bash
# bench/masking.sh: cost of pgclone's masking path, next to unmasked sessions and direct PostgreSQL.
#
# One run, one throwaway target cluster:
#   1. initdb + start a cluster (loopback only, scram-sha-256); public.people with
#      $BENCH_ROWS rows (id, full_name, email, phone, ssn, salary, notes: ~100 bytes of
#      sensitive-looking text a row); pgbench -i -s $BENCH_SCALE; roles masked_reader and
#      clear_reader (LOGIN, own passwords, SELECT on people and the pgbench tables)
#   2. a policy directory: people (email: email, full_name: name, phone: phone, ssn: "null")
#      and pgbench_accounts (filler: constant x), both with unmasked_roles: [clear_reader]
#   3. pgclone serve --policies DIR; checks through the proxy that masked_reader sees masked
#      values (every row of a full COPY and SELECT) and clear_reader the real ones
#   4. full reads of people (COPY (SELECT * ...) TO STDOUT, and SELECT * with psql -At), as
#      masked_reader via pgclone, clear_reader via pgclone, clear_reader direct; best of
#      $BENCH_ROUNDS; rows/s, masked/unmasked (goal >= 0.70) and proxy/direct ratios; also the
#      rewritten SQL pgclone sent (captured from the server log) run directly, which is the
#      server's share of the masking cost
#   5. pgbench -S -n -M simple -c 8 -j 2 -T $BENCH_SECONDS for the same three; TPS, latency and
#      an estimate of the per-statement cost of the masked path; then one client alone
#      (-c 1, $BENCH_LATENCY_SECONDS), where nothing queues: masked minus unmasked latency is
#      what the masked path adds to a statement (goal < 50 us), split into pgclone's CPU and
#      the server's (rewritten vs plain statement, both direct)
#   6. summary
# Everything started here is stopped on exit, success or not.
#
# Environment (all optional):
#   BENCH_ROUNDS=3  BENCH_SECONDS=15  BENCH_ROWS=1000000  BENCH_SCALE=10
#   BENCH_CLIENTS=8  BENCH_THREADS=2  BENCH_WARMUP=5 (seconds of pgbench -S direct first)
#   BENCH_LATENCY_SECONDS=10 (each single-client run)
#   BENCH_PORT_RANGE=20000-29999  BENCH_KEEP_WORKDIR=1
#   PGCLONE_BIN (default .build/release/pgclone; this script never builds unless BENCH_BUILD=1)
#   BENCH_PGCLONE_ARGS="..." (extra arguments for pgclone serve)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-15}
ROWS=${BENCH_ROWS:-1000000}
SCALE=${BENCH_SCALE:-10}
CLIENTS=${BENCH_CLIENTS:-8}
LATENCY_SECS=${BENCH_LATENCY_SECONDS:-10}
THREADS=${BENCH_THREADS:-2}
WARMUP=${BENCH_WARMUP:-5}
TICKS=$(getconf CLK_TCK)
CASES="masked_proxy clear_proxy clear_direct"
# masked_sql_direct: clear_reader runs, directly, the SQL that pgclone sent for masked_reader
# (captured from the server log), i.e. what the mask expressions cost the server alone.
READ_CASES="$CASES masked_sql_direct"

for tool in pgbench psql ss awk openssl md5sum cut; do
    command -v "$tool" >/dev/null || bench_die "$tool not found"
done
[ "$(id -u)" -eq 0 ] || [ "$(id -un)" = postgres ] || bench_die "run as root (server tools then run as the postgres user) or as postgres"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_ROUNDS must be a positive integer"
[[ "$ROWS" =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_ROWS must be a positive integer"

# --- binary -------------------------------------------------------------------
if [ "${BENCH_BUILD:-0}" = 1 ]; then
    bench_log "building pgclone (release)"
    (cd "$root" && swift build -c release --product pgclone)
    bin="$(cd "$root" && swift build -c release --show-bin-path)/pgclone"
else
    bin=${PGCLONE_BIN:-$root/.build/release/pgclone}
fi
[ -x "$bin" ] || bench_die "pgclone binary not found at $bin (build it, set PGCLONE_BIN, or BENCH_BUILD=1)"

# --- 1. cluster, data, roles ----------------------------------------------------
# The script's own stdout/stderr, kept on 8/9: a TERM/INT trap can fire while a function
# runs with its output redirected to a file, and on_exit must still report to the caller.
exec 8>&1 9>&2
work=$(mktemp -d /tmp/pgclone-masking-bench.XXXXXX)
CHILD=""   # the timed client currently running, if any
bench_trap_exit "$work/pgclone.log" "$work/postgres.log"

PASSWORD=${BENCH_PASSWORD:-$(openssl rand -hex 12)}
declare -A PW=(
    [postgres]=$PASSWORD
    [masked_reader]=$(openssl rand -hex 12)
    [clear_reader]=$(openssl rand -hex 12)
)
export PGPASSWORD=$PASSWORD PGUSER=postgres PGDATABASE=postgres
unset PGHOST PGPORT PGSERVICE PGOPTIONS PGSSLMODE PGAPPNAME

pg_port=$(bench_free_port)
bench_log "initdb in $work (port $pg_port)"
bench_cluster_init "$work" "$pg_port" "$PASSWORD"
bench_cluster_start "$work" 8>&- 9>&-

# admin SQL as the superuser over the private socket
admin_psql() { psql -X -q -v ON_ERROR_STOP=1 -h "$work/sock" -p "$pg_port" -U postgres -d postgres "$@"; }

bench_log "creating public.people ($ROWS rows)"
t0=$(date +%s%N)
admin_psql -v rows="$ROWS" >"$work/people-init.log" 2>&1 <<'SQL' || { cat "$work/people-init.log" >&2; bench_die "creating public.people failed"; }
CREATE TABLE public.people (
    id        int PRIMARY KEY,
    full_name text NOT NULL,
    email     text NOT NULL,
    phone     text,
    ssn       text,
    salary    int,
    notes     text
);
INSERT INTO public.people
SELECT g,
       n.f || ' ' || n.l,
       lower(n.f) || '.' || lower(n.l) || g || '@' || n.d,
       format('+1 (%s) %s-%s', 201 + h.h1 % 798, lpad((h.h2 % 1000)::text, 3, '0'), lpad((h.h3 % 10000)::text, 4, '0')),
       format('%s-%s-%s', lpad((1 + h.h1 % 899)::text, 3, '0'), lpad((1 + h.h2 % 99)::text, 2, '0'), lpad((1 + h.h3 % 9999)::text, 4, '0')),
       30000 + h.h2 % 170000,
       'since ' || (1995 + h.h3 % 30) || ', prefers ' || n.c || '; ref ' || left(md5(g::text), 10)
FROM generate_series(1, :rows) AS g
CROSS JOIN LATERAL (SELECT hashint4(g) & 2147483647 AS h1,
                           hashint4(g + 7919) & 2147483647 AS h2,
                           hashint4(g * 31 + 17) & 2147483647 AS h3) AS h
CROSS JOIN LATERAL (SELECT
    (ARRAY['James','Mary','Robert','Patricia','John','Jennifer','Michael','Linda','David','Elizabeth',
           'William','Barbara','Richard','Susan','Joseph','Jessica','Thomas','Sarah','Carlos','Karen',
           'Daniel','Lisa','Matthew','Nancy','Anthony','Sandra','Mark','Ashley','Ahmed','Yuki'])[1 + h.h1 % 30] AS f,
    (ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez','Martinez',
           'Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore','Jackson','Martin',
           'Lee','Perez','Thompson','White','Harris','Sanchez','Clark','Nakamura','Okafor','Novak'])[1 + h.h2 % 30] AS l,
    (ARRAY['example.com','mail.example.org','corp.example.net','inbox.example'])[1 + h.h3 % 4] AS d,
    (ARRAY['email','phone','postal mail','SMS'])[1 + (h.h1 / 7) % 4] AS c) AS n;
VACUUM (FREEZE, ANALYZE) public.people;
CHECKPOINT;
SQL
t1=$(date +%s%N)
people_size=$(admin_psql -At -c "select pg_size_pretty(pg_table_size('public.people'))")
people_text=$(admin_psql -At -c "select round(avg(octet_length(full_name) + octet_length(email) + octet_length(phone) + octet_length(ssn) + octet_length(notes))) from public.people")
bench_log "public.people: $ROWS rows, $people_size, ~$people_text bytes of text a row ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }') s)"

bench_log "pgbench -i -s $SCALE"
pgbench -i -q -s "$SCALE" -h "$work/sock" -p "$pg_port" postgres >"$work/pgbench-init.log" 2>&1 \
    || { cat "$work/pgbench-init.log" >&2; bench_die "pgbench -i failed"; }

bench_log "roles masked_reader and clear_reader"
admin_psql -v mpw="${PW[masked_reader]}" -v cpw="${PW[clear_reader]}" >"$work/roles.log" 2>&1 <<'SQL' || { cat "$work/roles.log" >&2; bench_die "creating roles failed"; }
CREATE ROLE masked_reader LOGIN PASSWORD :'mpw';
CREATE ROLE clear_reader LOGIN PASSWORD :'cpw';
GRANT SELECT ON public.people TO masked_reader, clear_reader;
GRANT SELECT ON public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers, public.pgbench_history
    TO masked_reader, clear_reader;
SQL

# --- 2. policies ----------------------------------------------------------------
mkdir -p "$work/policies"
cat >"$work/policies/people.yaml" <<'EOF'
# bench/masking.sh: four masked columns of public.people
policies:
  - table: public.people
    unmasked_roles: [clear_reader]
    columns:
      email: email
      full_name: name
      phone: phone
      ssn: "null"
EOF
cat >"$work/policies/pgbench.yaml" <<'EOF'
# bench/masking.sh: pgbench -S reads pgbench_accounts, so its statements are rewritten too
policies:
  - table: public.pgbench_accounts
    unmasked_roles: [clear_reader]
    columns:
      filler: { type: constant, value: x }
EOF
"$bin" policy check "$work/policies" >"$work/policy-check.log" 2>&1 \
    || { cat "$work/policy-check.log" >&2; bench_die "pgclone policy check rejected the policies"; }

# --- 3. pgclone -------------------------------------------------------------------
declare -A PORT
PORT[direct]=$pg_port
PORT[proxy]=$(bench_free_port)
bench_log "starting pgclone on 127.0.0.1:${PORT[proxy]}"
# shellcheck disable=SC2086 # BENCH_PGCLONE_ARGS is a word list on purpose
(cd "$root" && exec "$bin" serve --listen "127.0.0.1:${PORT[proxy]}" \
    --backend "host=127.0.0.1 port=$pg_port dbname=postgres user=postgres password=$PASSWORD" \
    --policies "$work/policies" ${BENCH_PGCLONE_ARGS:-}) >"$work/pgclone.log" 2>&1 8>&- 9>&- &
proxy_pid=$!
bench_track "$proxy_pid"
bench_wait_port "${PORT[proxy]}" 60 "$proxy_pid" || bench_die "pgclone did not start listening"

# case_role / case_port CASE: who connects where for masked_proxy, clear_proxy, clear_direct
case_role() { case $1 in masked_proxy) echo masked_reader ;; *) echo clear_reader ;; esac; }
case_port() { case $1 in *_direct) echo "${PORT[direct]}" ;; *) echo "${PORT[proxy]}" ;; esac; }
# (masked_sql_direct is clear_reader, direct)

# psql_as CASE psql-args...: psql as the case's role, to the case's port, over TCP
psql_as() {
    local c=$1 role
    shift
    role=$(case_role "$c")
    PGPASSWORD=${PW[$role]} psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(case_port "$c")" \
        -U "$role" -d postgres "$@"
}

# one_value CASE SQL: the single value SQL returns, or "ERROR: ..." (stderr) on failure
one_value() {
    local out
    if out=$(psql_as "$1" -At -c "$2" 2>&1); then printf '%s' "$out"; else printf 'ERROR: %s' "$out"; fi
}

CHECKS=()   # "ok ..." / "FAIL ..." lines for the summary
check() {   # check NAME GOT WANT-DESCRIPTION OK(0/1)
    if [ "$4" = 1 ]; then
        CHECKS+=("ok    $1")
    else
        CHECKS+=("FAIL  $1: got '$2', wanted $3")
        bench_log "CHECK FAILED: $1: got '$2', wanted $3"
    fi
}

bench_log "checking masking through pgclone"
q='SELECT email FROM people WHERE id=1'
real_email=$(admin_psql -At -c "$q")
masked_email=$(one_value masked_proxy "$q")
clear_email=$(one_value clear_proxy "$q")
[[ "$masked_email" == *'***@'* ]] \
    || bench_die "masked_reader through pgclone: '$q' returned '$masked_email', expected a masked value containing '***@' (real value: '$real_email')"
[ "$clear_email" = "$real_email" ] \
    || bench_die "clear_reader through pgclone: '$q' returned '$clear_email', expected the real value '$real_email'"
check "masked_reader: $q -> $masked_email" "$masked_email" "'***@'" 1
check "clear_reader:  $q -> $clear_email" "$clear_email" "'$real_email'" 1

# more spot checks; a failure is reported in the summary but does not stop the benchmark
q='SELECT full_name FROM people WHERE id=1'; v=$(one_value masked_proxy "$q")
check "masked_reader: $q" "$v" "XXXX" "$([ "$v" = XXXX ] && echo 1 || echo 0)"
q='SELECT phone FROM people WHERE id=1'; v=$(one_value masked_proxy "$q")
check "masked_reader: $q" "$v" "***-NNNN" "$([[ "$v" =~ ^\*\*\*-[0-9]{4}$ ]] && echo 1 || echo 0)"
q='SELECT ssn IS NULL FROM people WHERE id=1'; v=$(one_value masked_proxy "$q")
check "masked_reader: $q" "$v" "t" "$([ "$v" = t ] && echo 1 || echo 0)"
q='SELECT salary FROM people WHERE id=1'; v=$(one_value masked_proxy "$q"); w=$(admin_psql -At -c "$q")
check "masked_reader: $q (unmasked column)" "$v" "'$w'" "$([ "$v" = "$w" ] && echo 1 || echo 0)"
q="SELECT count(*) FROM people WHERE email = '$real_email'"; v=$(one_value masked_proxy "$q")
check "masked_reader: filter on a real value finds nothing" "$v" "0" "$([ "$v" = 0 ] && echo 1 || echo 0)"
q='SELECT rtrim(filler) FROM pgbench_accounts WHERE aid=1'; v=$(one_value masked_proxy "$q")
check "masked_reader: $q" "$v" "x" "$([ "$v" = x ] && echo 1 || echo 0)"
q='SELECT ssn FROM people WHERE id=1'; v=$(one_value clear_proxy "$q"); w=$(admin_psql -At -c "$q")
check "clear_reader:  $q" "$v" "'$w'" "$([ "$v" = "$w" ] && echo 1 || echo 0)"

# Full-table checks (untimed; they also warm the caches): every row masked, unmasked columns
# intact, clear_reader through pgclone byte-identical to direct. masked_reader's statements
# are logged meanwhile, to capture the rewritten SQL.
bench_log "checking full reads (COPY and SELECT) row by row"
admin_psql -c "ALTER ROLE masked_reader SET log_statement = 'all'"
copy_sql='COPY (SELECT * FROM people) TO STDOUT'
select_sql='SELECT * FROM people'
# masked_rows_bad FILE SEP: rows of FILE that are not masked as the policy says
masked_rows_bad() {
    awk -F"$2" -v null="$3" 'NF != 7 || $2 != "XXXX" || $3 !~ /^.\*\*\*@/ || $4 !~ /^\*\*\*-[0-9][0-9][0-9][0-9]$/ || $5 != null { bad++ }
        END { print bad + 0 }' "$1"
}
psql_as clear_direct -c "$copy_sql" >"$work/direct.copy"
psql_as clear_proxy -c "$copy_sql" >"$work/clear.copy" 2>"$work/clear.copy.err" \
    || { cat "$work/clear.copy.err" >&2; bench_die "clear_reader through pgclone: $copy_sql failed"; }
psql_as masked_proxy -c "$copy_sql" >"$work/masked.copy" 2>"$work/masked.copy.err" \
    || { cat "$work/masked.copy.err" >&2; bench_die "masked_reader through pgclone: $copy_sql failed"; }
n=$(wc -l <"$work/direct.copy")
[ "$n" -eq "$ROWS" ] || bench_die "direct COPY returned $n rows, expected $ROWS"
copy_bytes_clear=$(wc -c <"$work/direct.copy")
copy_bytes_masked=$(wc -c <"$work/masked.copy")
v=$(md5sum <"$work/clear.copy" | cut -d' ' -f1); w=$(md5sum <"$work/direct.copy" | cut -d' ' -f1)
check "clear_reader: COPY through pgclone identical to direct ($ROWS rows)" "md5 $v" "md5 $w" "$([ "$v" = "$w" ] && echo 1 || echo 0)"
v=$(wc -l <"$work/masked.copy")
check "masked_reader: COPY returns every row" "$v rows" "$ROWS" "$([ "$v" -eq "$ROWS" ] && echo 1 || echo 0)"
v=$(masked_rows_bad "$work/masked.copy" $'\t' '\N')
check "masked_reader: COPY, every row masked" "$v rows not masked" "0" "$([ "$v" = 0 ] && echo 1 || echo 0)"
v=$(cut -f1,6,7 "$work/masked.copy" | md5sum | cut -d' ' -f1); w=$(cut -f1,6,7 "$work/direct.copy" | md5sum | cut -d' ' -f1)
check "masked_reader: COPY, id/salary/notes unchanged" "md5 $v" "md5 $w" "$([ "$v" = "$w" ] && echo 1 || echo 0)"
rm -f "$work/clear.copy" "$work/direct.copy"
psql_as masked_proxy -At -c "$select_sql" >"$work/masked.select" 2>"$work/masked.select.err" \
    || { cat "$work/masked.select.err" >&2; bench_die "masked_reader through pgclone: $select_sql failed"; }
v=$(wc -l <"$work/masked.select")
check "masked_reader: SELECT * returns every row" "$v rows" "$ROWS" "$([ "$v" -eq "$ROWS" ] && echo 1 || echo 0)"
v=$(masked_rows_bad "$work/masked.select" '|' '')
check "masked_reader: SELECT *, every row masked" "$v rows not masked" "0" "$([ "$v" = 0 ] && echo 1 || echo 0)"
rm -f "$work/masked.copy" "$work/masked.select"
# pgbench -S's statement, with a literal that is easy to find in the log
q='SELECT abalance FROM pgbench_accounts WHERE aid = 424242'; v=$(one_value masked_proxy "$q"); w=$(admin_psql -At -c "$q")
check "masked_reader: $q (unmasked column)" "$v" "'$w'" "$([ "$v" = "$w" ] && echo 1 || echo 0)"
admin_psql -c "ALTER ROLE masked_reader RESET log_statement"
# rewritten_sql PREFIX: the last statement in the server log that starts with PREFIX
rewritten_sql() {
    grep -F "LOG:  statement: $1" "$work/postgres.log" | tail -n 1 | sed 's/^.*LOG:  statement: //' || true
}
declare -A SQL
SQL[copy]=$copy_sql
SQL[select]=$select_sql
SQL[masked_sql_direct,copy]=$(rewritten_sql 'COPY (SELECT * FROM pgclone_masked.')
SQL[masked_sql_direct,select]=$(rewritten_sql 'SELECT * FROM pgclone_masked.')
for method in copy select; do
    if [ -n "${SQL[masked_sql_direct,$method]}" ]; then
        printf '%s\n' "${SQL[masked_sql_direct,$method]}" >"$work/rewritten-$method.sql"
    else
        bench_log "could not capture the rewritten $method statement from the server log; skipping masked_sql_direct for it"
    fi
done
# the same for pgbench: a custom script equivalent to -S, with the rewritten statement
PGBENCH_CASES=$CASES
bench_sql=$(rewritten_sql 'SELECT abalance FROM pgclone_masked.')
if [[ "$bench_sql" == *'aid = 424242' ]]; then
    printf '\\set aid random(1, 100000 * %s)\n%s;\n' "$SCALE" "${bench_sql%424242}:aid" >"$work/rewritten-pgbench.sql"
    PGBENCH_CASES="$CASES masked_sql_direct"
else
    bench_log "could not capture the rewritten pgbench statement from the server log; skipping masked_sql_direct for pgbench"
fi

# --- 4. timed full reads ----------------------------------------------------------
declare -A BEST BESTCPU

# time_read CASE METHOD: one full read of people to /dev/null; sets READ_SECS and READ_CPU
# (pgclone CPU seconds, "-" for direct). The client runs in the background so that a
# TERM/INT trap fires at once.
time_read() {
    local c=$1 method=$2 rc=0 t0 t1 c0 c1 sql args
    sql=${SQL[$method]}
    [ "$c" = masked_sql_direct ] && sql=${SQL[masked_sql_direct,$method]}
    case $method in
        copy) args=(-c "$sql") ;;
        select) args=(-At -c "$sql") ;;
    esac
    c0=$(bench_cpu_ticks "$proxy_pid")
    t0=$(date +%s%N)
    psql_as "$c" "${args[@]}" >/dev/null 2>"$work/read.err" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    t1=$(date +%s%N)
    c1=$(bench_cpu_ticks "$proxy_pid")
    [ "$rc" -eq 0 ] || { cat "$work/read.err" >&2; bench_die "$method as $(case_role "$c") via port $(case_port "$c") failed"; }
    READ_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    if [[ "$c" == *_proxy ]]; then
        READ_CPU=$(awk -v d=$((c1 - c0)) -v hz="$TICKS" 'BEGIN { printf "%.2f", d / hz }')
    else
        READ_CPU="n/a"
    fi
}

load_before_reads=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
    for method in copy select; do
        for c in $READ_CASES; do
            [ "$c" = masked_sql_direct ] && [ -z "${SQL[masked_sql_direct,$method]}" ] && continue
            time_read "$c" "$method"
            cpu_note=""
            [ "$READ_CPU" = n/a ] || cpu_note=" (pgclone cpu ${READ_CPU}s)"
            bench_log "round $round/$ROUNDS: $method $c ${READ_SECS}s$cpu_note"
            if [ -z "${BEST[$c,$method]:-}" ] || awk -v a="$READ_SECS" -v b="${BEST[$c,$method]}" 'BEGIN { exit !(a < b) }'; then
                BEST[$c,$method]=$READ_SECS
                BESTCPU[$c,$method]=$READ_CPU
            fi
        done
    done
done

rps() { if [ -n "${1:-}" ]; then awk -v n="$ROWS" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; else echo "-"; fi; }
ratio() { # ratio A B: A/B with two decimals, "-" when either is missing
    if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo "-"; fi
}
goal() { # goal VALUE OP LIMIT: "met" / "MISSED"
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= l : v < l; print ok ? "met" : "MISSED" }'
}

echo
echo "full reads of public.people ($ROWS rows), best of $ROUNDS, psql output to /dev/null"
printf '%-7s %-17s %9s %12s %13s\n' method case seconds rows_per_s pgclone_cpu_s
for method in copy select; do
    for c in $READ_CASES; do
        printf '%-7s %-17s %9s %12s %13s\n' "$method" "$c" "${BEST[$c,$method]:--}" \
            "$(rps "${BEST[$c,$method]:-}")" "${BESTCPU[$c,$method]:--}"
    done
done
declare -A R_MASK R_PROXY R_SERVER
for method in copy select; do
    # rows/s ratios are inverse time ratios
    R_MASK[$method]=$(ratio "${BEST[clear_proxy,$method]}" "${BEST[masked_proxy,$method]}")
    R_PROXY[$method]=$(ratio "${BEST[clear_direct,$method]}" "${BEST[clear_proxy,$method]}")
    # masked SQL vs plain SQL, both direct: the server's own cost of the mask expressions
    R_SERVER[$method]=$(ratio "${BEST[clear_direct,$method]}" "${BEST[masked_sql_direct,$method]:-}")
    printf '%-7s masked/unmasked through pgclone = %s (goal >= 0.70: %s)   pgclone/direct (unmasked) = %s\n' \
        "$method" "${R_MASK[$method]}" "$(goal "${R_MASK[$method]}" '>=' 0.70)" "${R_PROXY[$method]}"
    printf '%-7s rewritten SQL / plain SQL, both direct (server cost of the masks) = %s\n' "$method" "${R_SERVER[$method]}"
done

# --- 5. pgbench -S ------------------------------------------------------------------
declare -A TPS LAT CPU NTX

# run_pgbench CASE SECONDS OUTFILE [CLIENTS THREADS]
run_pgbench() {
    local c=$1 role rc=0 script=(-S)
    role=$(case_role "$c")
    [ "$c" = masked_sql_direct ] && script=(-f "$work/rewritten-pgbench.sql")
    PGPASSWORD=${PW[$role]} pgbench "${script[@]}" -n -M simple -c "${4:-$CLIENTS}" -j "${5:-$THREADS}" -T "$2" \
        -h 127.0.0.1 -p "$(case_port "$c")" -U "$role" postgres >"$3" 2>&1 &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    [ "$rc" -eq 0 ] || { cat "$3" >&2; bench_die "pgbench as $role via port $(case_port "$c") failed"; }
}

if [ "$WARMUP" -gt 0 ]; then
    bench_log "warm-up: pgbench -S ${WARMUP}s direct"
    run_pgbench clear_direct "$WARMUP" "$work/warmup.txt"
fi
load_before_pgbench=$(cut -d' ' -f1-3 /proc/loadavg)
for c in $PGBENCH_CASES; do
    out="$work/pgbench-$c.txt"
    bench_log "pgbench $([ "$c" = masked_sql_direct ] && echo "-f rewritten-pgbench.sql" || echo -S) -n -M simple -c $CLIENTS -j $THREADS -T $SECS as $(case_role "$c") via $c"
    t0=$(bench_cpu_ticks "$proxy_pid")
    run_pgbench "$c" "$SECS" "$out"
    t1=$(bench_cpu_ticks "$proxy_pid")
    TPS[$c]=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
    LAT[$c]=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$out")
    NTX[$c]=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*$/\1/p' "$out")
    if [ -z "${TPS[$c]}" ] || [ -z "${LAT[$c]}" ] || [ -z "${NTX[$c]}" ]; then
        cat "$out" >&2
        bench_die "cannot parse pgbench output ($c)"
    fi
    if [[ "$c" == *_proxy ]]; then
        # pgclone CPU microseconds per statement
        CPU[$c]=$(awk -v d=$((t1 - t0)) -v hz="$TICKS" -v n="${NTX[$c]}" 'BEGIN { printf "%.1f", d / hz / n * 1e6 }')
    else
        CPU[$c]="-"
    fi
done

# One client: no queueing, so latency differences are per-statement costs.
declare -A LAT1 CPU1
for c in $PGBENCH_CASES; do
    out="$work/pgbench1-$c.txt"
    bench_log "pgbench -c 1 -j 1 -T $LATENCY_SECS as $(case_role "$c") via $c"
    t0=$(bench_cpu_ticks "$proxy_pid")
    run_pgbench "$c" "$LATENCY_SECS" "$out" 1 1
    t1=$(bench_cpu_ticks "$proxy_pid")
    LAT1[$c]=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$out")
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*$/\1/p' "$out")
    [ -n "${LAT1[$c]}" ] && [ -n "$n" ] || { cat "$out" >&2; bench_die "cannot parse pgbench output ($c, one client)"; }
    CPU1[$c]=$(awk -v d=$((t1 - t0)) -v hz="$TICKS" -v n="$n" 'BEGIN { printf "%.1f", d / hz / n * 1e6 }')
done
added_us=$(awk -v m="${LAT1[masked_proxy]}" -v u="${LAT1[clear_proxy]}" 'BEGIN { printf "%.1f", (m - u) * 1000 }')
added_cpu_us=$(awk -v m="${CPU1[masked_proxy]}" -v u="${CPU1[clear_proxy]}" 'BEGIN { printf "%.1f", m - u }')
added_server_us="-"
if [ -n "${LAT1[masked_sql_direct]:-}" ]; then
    added_server_us=$(awk -v m="${LAT1[masked_sql_direct]}" -v u="${LAT1[clear_direct]}" 'BEGIN { printf "%.1f", (m - u) * 1000 }')
fi

overhead_us=$(awk -v m="${TPS[masked_proxy]}" -v u="${TPS[clear_proxy]}" -v c="$CLIENTS" \
    'BEGIN { printf "%.1f", (1 / m - 1 / u) * c * 1e6 }')
cpu_overhead_us=$(awk -v m="${CPU[masked_proxy]}" -v u="${CPU[clear_proxy]}" 'BEGIN { printf "%.1f", m - u }')
# When pgbench, PostgreSQL and pgclone saturate every core, 1/tps x cores is the CPU time a
# statement costs the whole machine; x clients (above) is its latency, which queueing inflates.
cores=$(nproc)
cpu_bound_us=$(awk -v m="${TPS[masked_proxy]}" -v u="${TPS[clear_proxy]}" -v c="$cores" \
    'BEGIN { printf "%.1f", (1 / m - 1 / u) * c * 1e6 }')
server_overhead_us="-"
if [ -n "${TPS[masked_sql_direct]:-}" ]; then
    server_overhead_us=$(awk -v m="${TPS[masked_sql_direct]}" -v u="${TPS[clear_direct]}" -v c="$CLIENTS" \
        'BEGIN { printf "%.1f", (1 / m - 1 / u) * c * 1e6 }')
fi
echo
echo "pgbench -S -n -M simple -c $CLIENTS -j $THREADS -T $SECS, scale $SCALE (pgbench_accounts.filler masked for masked_reader)"
printf '%-17s %-14s %11s %11s %12s %18s\n' case role tps latency_ms statements pgclone_cpu_us/stmt
for c in $PGBENCH_CASES; do
    printf '%-17s %-14s %11.1f %11.3f %12s %18s\n' "$c" "$(case_role "$c")" "${TPS[$c]}" "${LAT[$c]}" "${NTX[$c]}" "${CPU[$c]}"
done
echo "masked/unmasked TPS through pgclone = $(ratio "${TPS[masked_proxy]}" "${TPS[clear_proxy]}"), pgclone/direct (unmasked) = $(ratio "${TPS[clear_proxy]}" "${TPS[clear_direct]}")"
echo "estimated per-statement cost of the masked path under load: (1/tps_masked - 1/tps_unmasked) x $CLIENTS clients = $overhead_us us (queueing included)"
echo "  pgclone CPU per statement, masked minus unmasked: $cpu_overhead_us us"
echo "  machine CPU per statement if all $cores cores are saturated: (1/tps_masked - 1/tps_unmasked) x $cores = $cpu_bound_us us"
echo "  the server's share: rewritten vs plain statement, both direct: (1/tps - 1/tps) x $CLIENTS = $server_overhead_us us"
echo "one client, ${LATENCY_SECS}s per run:"
printf '%-17s %11s %18s\n' case latency_ms pgclone_cpu_us/stmt
for c in $PGBENCH_CASES; do
    printf '%-17s %11s %18s\n' "$c" "${LAT1[$c]}" "$([[ "$c" == *_proxy ]] && echo "${CPU1[$c]}" || echo -)"
done
echo "masked path adds $added_us us per statement (goal < 50 us: $(goal "$added_us" '<' 50)): pgclone CPU +$added_cpu_us us, server +$added_server_us us"

# --- 6. summary ------------------------------------------------------------------
log_problems=$(grep -ciE '\b(error|warning|critical)\b' "$work/pgclone.log" || true)
echo
echo "==================== summary ===================="
echo "$("$bin" --version 2>/dev/null || echo 'pgclone ?'), $(nproc) cores shared by clients, pgclone and PostgreSQL"
echo "public.people: $ROWS rows, $people_size, ~$people_text bytes of text a row; 4 masked columns (email, full_name, phone, ssn)"
echo "COPY output: $copy_bytes_clear bytes unmasked, $copy_bytes_masked bytes masked"
echo "load average before the reads: $load_before_reads; before pgbench: $load_before_pgbench (other work skews every number)"
echo "full reads, best of $ROUNDS (rows/s):"
for method in copy select; do
    printf '  %-7s masked/pgclone %9s   unmasked/pgclone %9s   direct %9s\n' "$method" \
        "$(rps "${BEST[masked_proxy,$method]}")" "$(rps "${BEST[clear_proxy,$method]}")" "$(rps "${BEST[clear_direct,$method]}")"
    printf '  %-7s masked/unmasked %sx (goal >= 0.70: %s), pgclone/direct %sx\n' "" \
        "${R_MASK[$method]}" "$(goal "${R_MASK[$method]}" '>=' 0.70)" "${R_PROXY[$method]}"
    printf '  %-7s rewritten SQL run directly %s rows/s = %sx of plain SQL direct (the server'"'"'s share)\n' "" \
        "$(rps "${BEST[masked_sql_direct,$method]:-}")" "${R_SERVER[$method]}"
done
echo "pgbench -S -M simple -c $CLIENTS -j $THREADS, ${SECS}s per run:"
for c in $PGBENCH_CASES; do
    printf '  %-17s %8.0f tps / %s ms\n' "$c" "${TPS[$c]}" "${LAT[$c]}"
done
echo "  masked/unmasked $(ratio "${TPS[masked_proxy]}" "${TPS[clear_proxy]}")x, pgclone/direct $(ratio "${TPS[clear_proxy]}" "${TPS[clear_direct]}")x"
echo "  under load (8 clients queue for 2 cores): +$overhead_us us latency a statement; pgclone CPU +$cpu_overhead_us us"
echo "  CPU-bound view: (1/tps_masked - 1/tps_unmasked) x $cores cores = $cpu_bound_us us of machine CPU per statement"
echo "  of which the server runs the rewritten statement slower by (estimate): $server_overhead_us us"
echo "  one client alone: masked ${LAT1[masked_proxy]} ms, unmasked ${LAT1[clear_proxy]} ms through pgclone"
echo "  masked path adds $added_us us per statement (goal < 50 us: $(goal "$added_us" '<' 50)): pgclone CPU +$added_cpu_us us, server +$added_server_us us"
failed_checks=0
for line in "${CHECKS[@]}"; do [[ "$line" == FAIL* ]] && failed_checks=$((failed_checks + 1)); done
echo "masking checks: $(( ${#CHECKS[@]} - failed_checks ))/${#CHECKS[@]} passed"
for line in "${CHECKS[@]}"; do echo "  $line"; done
echo "pgclone log: $log_problems error/warning lines"
if [ "$log_problems" -gt 0 ]; then
    grep -iE '\b(error|warning|critical)\b' "$work/pgclone.log" | sort | uniq -c | sort -rn | head -n 10 | sed 's/^/  /'
fi
echo "================================================="
[ "$failed_checks" -eq 0 ] || exit 1
