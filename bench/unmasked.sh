#!/usr/bin/env bash
# bench/unmasked.sh: what a masking policy on one table costs sessions that are not masked.
#
# One run, one throwaway target cluster:
#   1. initdb + start a cluster (loopback only, scram-sha-256); pgbench -i -s $BENCH_SCALE;
#      a role app_reader (LOGIN, not a superuser, SELECT on the pgbench tables) and a table
#      public.people that a policy masks (app_reader is not masked by it: unmasked_roles)
#   2. two pgclone proxies in front of it: one with no policies (`policies: []`), one with the
#      policy on public.people
#   3. pgbench as app_reader through each, interleaved, best of $BENCH_ROUNDS:
#      a. the script `BEGIN; SELECT abalance FROM pgbench_accounts WHERE aid = :aid; COMMIT;`
#      b. -S (one SELECT per transaction)
#      both -M $BENCH_PROTOCOL -c $BENCH_CLIENTS -j $BENCH_THREADS -T $BENCH_SECONDS
#   4. TPS of each, and policy/no-policy ratios (goal >= 0.95), plus pgclone's CPU per
#      transaction (from /proc) for each
# Everything started here is stopped on exit, success or not.
#
# Environment (all optional):
#   BENCH_PROTOCOL=simple (or extended, prepared: every Bind and Execute of the session is then read)
#   BENCH_SECONDS=15  BENCH_ROUNDS=3  BENCH_SCALE=10  BENCH_CLIENTS=8  BENCH_THREADS=2
#   BENCH_PORT_RANGE=20000-29999
#   PGCLONE_BIN (default .build/release/pgclone; built when missing unless BENCH_NO_BUILD=1)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

SECS=${BENCH_SECONDS:-15}
ROUNDS=${BENCH_ROUNDS:-3}
PROTOCOL=${BENCH_PROTOCOL:-simple}
case $PROTOCOL in simple|extended|prepared) ;; *) echo "BENCH_PROTOCOL: simple, extended or prepared, not $PROTOCOL" >&2; exit 2 ;; esac
SCALE=${BENCH_SCALE:-10}
CLIENTS=${BENCH_CLIENTS:-8}
THREADS=${BENCH_THREADS:-2}
TICKS=$(getconf CLK_TCK)

for tool in pgbench psql awk openssl; do
    command -v "$tool" >/dev/null || bench_die "$tool not found"
done

bin=${PGCLONE_BIN:-$root/.build/release/pgclone}
if [ ! -x "$bin" ] && [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    bench_log "building pgclone (release)"
    (cd "$root" && swift build -c release --product pgclone)
fi
[ -x "$bin" ] || bench_die "pgclone binary not found at $bin"

work=$(mktemp -d /tmp/pgclone-bench-unmasked.XXXXXX)
CHILD=""
bench_trap_exit "$work/nopolicy.log" "$work/policy.log" "$work/postgres.log"

PASSWORD=$(openssl rand -hex 12)
APP_PASSWORD=$(openssl rand -hex 12)
export PGPASSWORD=$PASSWORD PGUSER=postgres PGDATABASE=postgres
unset PGHOST PGPORT PGSERVICE PGOPTIONS PGSSLMODE

pg_port=$(bench_free_port)
bench_log "initdb in $work (port $pg_port)"
bench_cluster_init "$work" "$pg_port" "$PASSWORD"
bench_cluster_start "$work"
bench_log "pgbench -i -s $SCALE"
pgbench -i -q -s "$SCALE" -h "$work/sock" -p "$pg_port" postgres >"$work/pgbench-init.log" 2>&1 \
    || { cat "$work/pgbench-init.log" >&2; bench_die "pgbench -i failed"; }
psql -X -q -v ON_ERROR_STOP=1 -h "$work/sock" -p "$pg_port" postgres <<SQL
CREATE ROLE app_reader LOGIN PASSWORD '$APP_PASSWORD';
GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers TO app_reader;
CREATE TABLE public.people (id int PRIMARY KEY, email text, ssn text);
INSERT INTO public.people SELECT g, 'p' || g || '@example.com', 'ssn-' || g FROM generate_series(1, 1000) g;
GRANT SELECT ON public.people TO app_reader;
SQL

mkdir -p "$work/nopolicy" "$work/policy"
echo 'policies: []' >"$work/nopolicy/none.yaml"
cat >"$work/policy/people.yaml" <<'EOF'
policies:
  - table: public.people
    unmasked_roles: [app_reader]
    columns:
      email: email
      ssn: "null"
EOF

declare -A PORT PID
for kind in nopolicy policy; do
    PORT[$kind]=$(bench_free_port)
    (cd "$root" && exec "$bin" serve --listen "127.0.0.1:${PORT[$kind]}" --policies "$work/$kind" \
        --backend "host=127.0.0.1 port=$pg_port dbname=postgres user=postgres password=$PASSWORD") >"$work/$kind.log" 2>&1 &
    PID[$kind]=$!
    bench_track "${PID[$kind]}"
    bench_wait_port "${PORT[$kind]}" 60 "${PID[$kind]}" || bench_die "pgclone ($kind) did not start listening"
done
# The policy is in force: app_reader is exempt, anyone else would see masked values.
got=$(PGPASSWORD=$APP_PASSWORD psql -X -At -h 127.0.0.1 -p "${PORT[policy]}" -U app_reader -c "SELECT email FROM people WHERE id = 1")
[ "$got" = "p1@example.com" ] || bench_die "app_reader through the policy proxy: $got"

printf 'BEGIN;\n\\set aid random(1, 100000 * %s)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\nCOMMIT;\n' "$SCALE" >"$work/commit.sql"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A BEST CPUTX
for round in $(seq 1 "$ROUNDS"); do
    for script in commit select; do
        for kind in nopolicy policy; do
            args=(-S)
            [ "$script" = commit ] && args=(-f "$work/commit.sql")
            before=$(cpu_ticks "${PID[$kind]}")
            out="$work/$script-$kind-$round.txt"
            PGPASSWORD=$APP_PASSWORD pgbench "${args[@]}" -n -M "$PROTOCOL" -c "$CLIENTS" -j "$THREADS" -T "$SECS" \
                -h 127.0.0.1 -p "${PORT[$kind]}" -U app_reader postgres >"$out" 2>&1 &
            CHILD=$!
            wait "$CHILD" || { cat "$out" >&2; bench_die "pgbench ($script, $kind) failed"; }
            CHILD=""
            after=$(cpu_ticks "${PID[$kind]}")
            tps=$(awk '/^tps = / {printf "%.0f", $3}' "$out")
            tx=$(awk '/number of transactions actually processed/ {print $NF}' "$out")
            bench_log "round $round: $script via $kind: $tps tps"
            if [ -z "${BEST[$script,$kind]:-}" ] || [ "$tps" -gt "${BEST[$script,$kind]}" ]; then
                BEST[$script,$kind]=$tps
                CPUTX[$script,$kind]=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$tx" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
            fi
        done
    done
done

echo
echo "pgclone in front of PostgreSQL, pgbench as a role no policy masks (app_reader), -c $CLIENTS -j $THREADS -T $SECS, best of $ROUNDS"
printf '%-34s %12s %12s %8s %22s\n' "workload" "no policy" "policy" "ratio" "pgclone us CPU/tx"
for script in commit select; do
    label="BEGIN; SELECT ...; COMMIT"
    [ "$script" = select ] && label="-S (SELECT)"
    ratio=$(awk -v a="${BEST[$script,policy]}" -v b="${BEST[$script,nopolicy]}" 'BEGIN { printf "%.2f", a / b }')
    printf '%-34s %12s %12s %8s %10s / %-10s\n' "$label" "${BEST[$script,nopolicy]}" "${BEST[$script,policy]}" "${ratio}x" \
        "${CPUTX[$script,nopolicy]}" "${CPUTX[$script,policy]}"
done
echo "(goal: policy / no policy >= 0.95 for both)"
