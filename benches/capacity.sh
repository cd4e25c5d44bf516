#!/usr/bin/env bash
# What one notification costs the PostgreSQL server, phase by phase: the figures that
# docs/scaling.md builds its capacity model on.
#
# In a scratch database herald_capacity_<random> (created, migrated with `herald migrate`, dropped
# on exit, also on error and Ctrl-C, together with its bookkeeping database
# herald_capacity_meta_<random>), each run measures these phases, one after another:
#
#   enqueue_sql_single  `select * from herald.enqueue(…)`, one notification per transaction,
#                       CLIENTS concurrent psql sessions (what another language does)
#   enqueue_group       `herald._enqueue_group(jsonb, …)` with GROUP items per statement, CLIENTS
#                       concurrent sessions: the statement the library's group commit sends when
#                       GROUP concurrent `herald::enqueue` calls share a commit (wake-up off)
#   enqueue_many_1000   `herald.enqueue_many(jsonb)` with 1,000 items per call, one session
#   dispatch            `herald run --until-idle` (default dispatcher settings) delivers every
#                       notification the enqueue phases left (3 × N, less the items of any group that gave up) as signed webhooks to a
#                       loopback receiver that answers 200 at once: claims, outcomes, attempt
#                       rows, heartbeats, the rescuer's polls
#   vacuum              `VACUUM herald.queue, herald.intents, herald.attempts` after dispatch
#   sweep               `herald sweep` with retention 0 s: deletes every finished notification
#                       and its attempt (per row deleted)
#   vacuum_after_sweep  the same VACUUM again: the dead rows and index entries the sweep left
#
# and, between vacuum and sweep, the bytes a finished notification (intent + one attempt) keeps
# on disk. Notifications go to TENANTS tenants, each with one webhook endpoint; each carries the
# key (tenant, user-<i>, capacity, <phase>-<i>) and the payload of `herald bench`'s enqueue
# ({"order": i, "items": [{"sku": "A-1", "qty": 2}]}, 45 bytes).
#
# Per phase and notification it reports:
#   stmt µs   server time of the phase's top-level statements, from pg_stat_statements
#             (total_exec_time + total_plan_time): executor time, not including commit (the
#             WAL flush), parse, or the network
#   cpu µs    CPU time of all the server's processes (postmaster, backends, autovacuum, WAL
#             writer, checkpointer…; from /proc, so only when the server runs on this machine
#             and shares its /proc; else "-"). Includes connection start-up of the phase's
#             clients and anything else the cluster did meanwhile: run it on a quiet cluster
#   WAL B     bytes of WAL the cluster wrote (pg_current_wal_lsn() difference), everything
#             included: commit records, full-page images, autovacuum
#   stmt WAL  WAL bytes attributed to the phase's statements by pg_stat_statements
#   FPI/1k    full-page images per 1,000 notifications (pg_stat_wal): they depend on how recently
#             a checkpoint ran, so they vary between runs
#   commits   transactions committed in the scratch database per 1,000 notifications
#   stmts     top-level statements per notification
#   daemon cpu µs  (dispatch only) CPU time of the `herald run` process itself: claims, signing,
#             HTTP, outcome writes on the client side
#   tuples    rows inserted / updated (of which heap-only) / deleted, per table, per notification
# and, per statement, calls, rows per call and server µs per call. With RUNS > 1 every figure
# is "least – greatest" over the runs.
#
# Needs: a release build of herald (HERALD), psql, python3 (the receiver and the batches),
# pg_stat_statements in shared_preload_libraries (the script creates the extension in its
# database), a superuser (CREATE DATABASE, roles, pg_stat_statements_reset). `herald migrate`
# creates herald's cluster-wide roles (herald_owner, …) if missing; they are not dropped.
#
# Environment:
#   PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres)  the server, over TCP
#   HERALD     target/release/herald
#   N          notifications per enqueue phase (32000); dispatch, vacuum and sweep see 3 × N
#   CLIENTS    concurrent sessions of the two single-item phases (16)
#   GROUP      items per group-commit statement (16)
#   TENANTS    tenants, one endpoint each (4)
#   RUNS       repetitions, each in a fresh database (2)
#
# Output (stdout): the per-notification table, the tuples table, the statements table; progress
# goes to stderr. Example:
#   PGPORT=5499 HERALD=target/release/herald N=32000 RUNS=2 bash benches/capacity.sh
set -euo pipefail

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
HERALD="${HERALD:-target/release/herald}"
N="${N:-32000}" CLIENTS="${CLIENTS:-16}" GROUP="${GROUP:-16}" TENANTS="${TENANTS:-4}" RUNS="${RUNS:-2}"
BATCH=1000

die() { echo "capacity.sh: $*" >&2; exit 1; }
[[ -x "$HERALD" ]] || die "no herald binary at $HERALD (cargo build --release, or set HERALD)"
command -v psql >/dev/null || die "psql not found"
command -v python3 >/dev/null || die "python3 not found"
for v in N CLIENTS GROUP TENANTS RUNS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
(( N % (CLIENTS * GROUP) == 0 && N % BATCH == 0 )) \
  || die "N ($N) must be a multiple of CLIENTS × GROUP ($((CLIENTS * GROUP))) and of $BATCH"

SUFFIX="$(date +%s)_$$"
META="herald_capacity_meta_$SUFFIX"
DB=""
WORK="$(mktemp -d)"
RECEIVER_PID=""
DAEMON_PID=""

psql_in() { local db="$1"; shift; psql -X -v ON_ERROR_STOP=1 -Atq -d "$db" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e # clean up everything, whatever fails
  if [[ -n "$DAEMON_PID" ]]; then kill "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID" 2>/dev/null; fi
  if [[ -n "$RECEIVER_PID" ]]; then kill "$RECEIVER_PID" 2>/dev/null; wait "$RECEIVER_PID" 2>/dev/null; fi
  for db in "$DB" "$META"; do
    if [[ -n "$db" ]]; then psql_in postgres -c "drop database if exists \"$db\" with (force)" >/dev/null 2>&1; fi
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql_in postgres -c "show shared_preload_libraries" | grep -q pg_stat_statements \
  || die "pg_stat_statements is not in the server's shared_preload_libraries"

# --- the server's CPU time, from /proc (when the server is local) -----------------------------
POSTMASTER=""
TCK="$(getconf CLK_TCK)"
ckpt="$(psql_in postgres -c "select pid from pg_stat_activity where backend_type = 'checkpointer'")"
if [[ -r "/proc/$ckpt/stat" ]]; then
  POSTMASTER="$(awk '{print $4}' "/proc/$ckpt/stat")"
  [[ "$(cat "/proc/$POSTMASTER/comm" 2>/dev/null)" =~ ^postgres|^postmaster ]] || POSTMASTER=""
fi
# Ticks of the postmaster, its reaped children, and its live children.
server_ticks() {
  [[ -z "$POSTMASTER" ]] && { echo ""; return; }
  local total own
  own="$(awk '{print $14 + $15 + $16 + $17}' "/proc/$POSTMASTER/stat")"
  total="$(awk -v pm="$POSTMASTER" '
      { sub(/^[0-9]+ \(.*\) /, ""); if ($2 == pm) t += $12 + $13 } END { print t + 0 }' \
      /proc/[0-9]*/stat 2>/dev/null || true)"
  echo $(( own + total ))
}

# --- the loopback receiver ---------------------------------------------------------------------
cat >"$WORK/receiver.py" <<'EOF'
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
python3 -u "$WORK/receiver.py" >"$WORK/receiver.port" 2>"$WORK/receiver.err" &
RECEIVER_PID=$!
for _ in $(seq 1 50); do [[ -s "$WORK/receiver.port" ]] && break; sleep 0.1; done
RECEIVER_PORT="$(head -1 "$WORK/receiver.port")"
[[ -n "$RECEIVER_PORT" ]] || die "the receiver did not start: $(cat "$WORK/receiver.err")"

# --- bookkeeping -------------------------------------------------------------------------------
psql_in postgres -c "create database \"$META\"" >/dev/null
psql_in "$META" >/dev/null <<'EOF'
create extension pg_stat_statements;
create table result (run int, phase text, ord int, metric text, value float8);
create table stmt (run int, phase text, query text, calls bigint, rows bigint, ms float8, wal bigint);
EOF

write_config() { # $1 file, $2 retention
  cat >"$1" <<EOF
[webhook]
allowed_networks = ["127.0.0.1/32"]
[sweeper]
schedule = "0 0 0 1 1 *"
retention = "$2"
[metrics]
listen = ""
EOF
}
write_config "$WORK/run.toml" "30d"
write_config "$WORK/sweep.toml" "0s"

# Writes the psql input files of the enqueue phases (python: 60,000 items of JSON are slow in bash).
write_batches() { # $1 run
  python3 - "$WORK" "$1" "$N" "$CLIENTS" "$GROUP" "$BATCH" "$WORK/endpoints" <<'EOF'
import json, sys
work, run, n, clients, group, batch, endpoints = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7]), sys.argv[7]
eps = [line.split() for line in open(endpoints) if line.strip()]
def item(phase, i):
    tenant, ep = eps[i % len(eps)]
    return {"tenant": tenant, "user_id": f"user-{i % 100000}", "type": "capacity",
            "business_id": f"{phase}-{run}-{i}", "webhook": ep,
            "payload": {"order": i, "items": [{"sku": "A-1", "qty": 2}]}}
def lit(s):
    return "'" + s.replace("'", "''") + "'"
per_client = n // clients
for c in range(clients):
    with open(f"{work}/single.{c}.sql", "w") as f:
        for i in range(c * per_client, (c + 1) * per_client):
            it = item("single", i)
            f.write("select * from herald.enqueue(%s, 'capacity', %s, webhook => %s, payload => %s, tenant => %s);\n"
                    % (lit(it["user_id"]), lit(it["business_id"]), lit(it["webhook"]),
                       lit(json.dumps(it["payload"])), lit(it["tenant"])))
    with open(f"{work}/group.{c}.sql", "w") as f:
        for g in range(c * per_client, (c + 1) * per_client, group):
            items = [item("group", i) for i in range(g, g + group)]
            f.write("select count(*) from herald._enqueue_group(%s::jsonb, 65536, false);\n" % lit(json.dumps(items)))
with open(f"{work}/many.sql", "w") as f:
    for b in range(0, n, batch):
        items = [item("many", i) for i in range(b, b + batch)]
        f.write("select count(*) from herald.enqueue_many(%s::jsonb);\n" % lit(json.dumps(items)))
EOF
}

# --- one phase ---------------------------------------------------------------------------------
ORD=0
begin_phase() {
  DB_OID="$(psql_in "$META" -c "select oid from pg_database where datname = '$DB'")"
  psql_in "$META" -c "select pg_stat_statements_reset(0, $DB_OID::oid, 0)" >/dev/null
  TABLES0="$(psql_in "$DB" -c "select string_agg(format('(%L,%s,%s,%s,%s)', relname, n_tup_ins,
      n_tup_upd, n_tup_hot_upd, n_tup_del), ',') from pg_stat_user_tables where schemaname = 'herald'")"
  sleep 0.2 # the reading session's own statistics reach shared memory at its exit
  read -r LSN0 COMMITS0 FPI0 < <(psql_in "$META" -F ' ' -c "select pg_current_wal_lsn(),
      (select xact_commit from pg_stat_database where datname = '$DB'), (select wal_fpi from pg_stat_wal)")
  TICKS0="$(server_ticks)"
  T0="$(date +%s.%N)"
  OTHERS="$(psql_in "$META" -c "select count(*) from pg_stat_activity
      where backend_type = 'client backend' and datname not in ('$DB', '$META')")"
}

end_phase() { # $1 phase, $2 notifications
  local phase="$1" n="$2" t1 ticks1 cpu
  t1="$(date +%s.%N)"
  sleep 0.5 # exited clients' statistics reach shared memory
  ticks1="$(server_ticks)"
  OTHERS=$(( OTHERS + $(psql_in "$META" -c "select count(*) from pg_stat_activity
      where backend_type = 'client backend' and datname not in ('$DB', '$META')") ))
  (( OTHERS == 0 )) || echo "  warning: $phase: other databases had sessions on this server:" \
      "the cluster-wide figures (cpu µs, WAL B, FPI/1k) include their work" >&2
  cpu="null"
  [[ -n "$TICKS0" && -n "$ticks1" ]] && cpu="$(( ticks1 - TICKS0 )) * 1e6 / $TCK"
  ORD=$((ORD + 1))
  psql_in "$META" >/dev/null <<EOF
insert into result (run, phase, ord, metric, value)
select $RUN, '$phase', $ORD, m, v from (values
  ('n', $n::float8),
  ('seconds', $t1 - $T0),
  ('cpu_us', $cpu / $n),
  ('wal_b', (pg_current_wal_lsn() - '$LSN0'::pg_lsn) / $n),
  ('fpi_k', ((select wal_fpi from pg_stat_wal) - $FPI0) * 1000.0 / $n),
  ('commits_k', ((select xact_commit from pg_stat_database where datname = '$DB') - $COMMITS0) * 1000.0 / $n),
  ('stmt_us', (select sum(total_exec_time + total_plan_time) * 1000 from pg_stat_statements
               where dbid = $DB_OID and toplevel) / $n),
  ('stmt_wal_b', (select sum(wal_bytes) from pg_stat_statements where dbid = $DB_OID and toplevel) / $n),
  ('stmts', (select sum(calls) from pg_stat_statements where dbid = $DB_OID and toplevel) / $n::float8)
) as m(m, v);
insert into stmt
select $RUN, '$phase', left(regexp_replace(query, '\s+', ' ', 'g'), 70), calls, rows,
       total_exec_time + total_plan_time, wal_bytes
from pg_stat_statements where dbid = $DB_OID and toplevel;
EOF
  local tuples
  tuples="$(psql_in "$DB" -c "
    with before(relname, ins, upd, hot, del) as (values $TABLES0)
    select string_agg(format('(%s,%L,%s,%L,%s)', $RUN, '$phase', $ORD, t.relname || '.' || m, v::float8 / $n), ',')
    from pg_stat_user_tables t join before b using (relname)
    cross join lateral (values ('ins', t.n_tup_ins - b.ins), ('upd', t.n_tup_upd - b.upd),
                               ('hot', t.n_tup_hot_upd - b.hot), ('del', t.n_tup_del - b.del)) as x(m, v)
    where t.schemaname = 'herald' and v <> 0")"
  [[ -n "$tuples" ]] && psql_in "$META" -c "insert into result values $tuples" >/dev/null
  echo "  $phase: $n notifications in $(awk -v a="$T0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s" >&2
}

# CPU seconds of this shell's reaped children (user + system), for the daemon's own CPU time.
# (`times` runs in this shell: in a command substitution it would see the subshell's children.)
children_cpu() { # $1 variable to set
  times >"$WORK/times"
  printf -v "$1" '%s' "$(tail -1 "$WORK/times" \
    | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } print t }')"
}

# Runs the CLIENTS files $1.<c>.sql concurrently. A statement that fails (a group that gave up
# on its 50 ms lock_timeout) is counted in $WORK/failed and the session goes on: its items are
# not enqueued, and the phase's figures are per notification actually enqueued.
run_parallel() { # $1 file prefix
  local pids=() c
  for c in $(seq 0 $((CLIENTS - 1))); do
    psql -X -Atq -v ON_ERROR_STOP=0 -d "$DB" -f "$WORK/$1.$c.sql" >/dev/null 2>"$WORK/$1.$c.err" &
    pids+=($!)
  done
  for c in "${pids[@]}"; do wait "$c"; done
  cat "$WORK/$1".*.err | grep '^psql:.*ERROR' | sed 's/^psql:[^:]*:[0-9]*: //' | sort | uniq -c >"$WORK/failed" || true
  if [[ -s "$WORK/failed" ]]; then
    echo "  $1: statements that failed (their items are not counted):" >&2
    sed 's/^/    /' "$WORK/failed" >&2
  fi
}

queued() { psql_in "$DB" -c "select count(*) from herald.queue"; }

# --- the runs ----------------------------------------------------------------------------------
for RUN in $(seq 1 "$RUNS"); do
  ORD=0
  DB="herald_capacity_${SUFFIX}_$RUN"
  URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
  echo "run $RUN of $RUNS: $DB" >&2
  "$HERALD" --config "$WORK/run.toml" --database-url "$URL" migrate >/dev/null
  psql_in "$DB" -c "create extension if not exists pg_stat_statements" >/dev/null
  # As docs/operating.md advises for the queue.
  psql_in "$DB" -c "alter table herald.queue set (autovacuum_vacuum_scale_factor = 0.01,
                    autovacuum_vacuum_threshold = 1000)" >/dev/null
  : >"$WORK/endpoints"
  for t in $(seq 1 "$TENANTS"); do
    id="$("$HERALD" --config "$WORK/run.toml" --database-url "$URL" endpoints add --json \
          --tenant "tenant-$t" --url "http://127.0.0.1:$RECEIVER_PORT/hook" \
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
    echo "tenant-$t $id" >>"$WORK/endpoints"
  done
  write_batches "$RUN"
  psql_in "$DB" -c "vacuum analyze" >/dev/null
  psql_in "$DB" -c "checkpoint" >/dev/null

  begin_phase; run_parallel single; end_phase enqueue_sql_single "$(queued)"
  q0="$(queued)"
  begin_phase; run_parallel group; end_phase enqueue_group "$(( $(queued) - q0 ))"
  q0="$(queued)"
  begin_phase; psql_in "$DB" -f "$WORK/many.sql" >/dev/null; end_phase enqueue_many_1000 "$(( $(queued) - q0 ))"

  total="$(queued)"
  begin_phase
  children_cpu cpu0
  RUST_LOG=warn "$HERALD" --config "$WORK/run.toml" --database-url "$URL" run --until-idle --no-migrate \
    >"$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  wait "$DAEMON_PID" || die "herald run failed: $(tail -5 "$WORK/daemon.log")"
  DAEMON_PID=""
  children_cpu cpu1
  end_phase dispatch "$total"
  psql_in "$META" -c "insert into result values ($RUN, 'dispatch', $ORD, 'daemon_cpu_us',
                      ($cpu1 - $cpu0) * 1e6 / $total)" >/dev/null
  delivered="$(psql_in "$DB" -c "select count(*) from herald.intents where state = 'delivered'")"
  [[ "$delivered" == "$total" ]] || die "dispatch delivered $delivered of $total"

  begin_phase
  psql_in "$DB" -c "vacuum herald.queue, herald.intents, herald.attempts" >/dev/null
  end_phase vacuum "$total"

  # What a finished notification keeps on disk until it is swept (heap with its free space,
  # TOAST, indexes), after the vacuum above.
  ORD=$((ORD + 1))
  stored="$(psql_in "$DB" -c "select string_agg(format('(%s,%L,%s,%L,%s)', $RUN, 'stored', $ORD, m, v), ',')
      from (select count(*) as n from herald.intents) c,
      lateral (values
        ('intents.heap', pg_relation_size('herald.intents')::float8 / c.n),
        ('intents.toast', (pg_table_size('herald.intents') - pg_relation_size('herald.intents'))::float8 / c.n),
        ('intents.indexes', pg_indexes_size('herald.intents')::float8 / c.n),
        ('attempts.heap', pg_table_size('herald.attempts')::float8 / c.n),
        ('attempts.indexes', pg_indexes_size('herald.attempts')::float8 / c.n),
        ('total', (pg_total_relation_size('herald.intents') + pg_total_relation_size('herald.attempts'))::float8 / c.n)
      ) as x(m, v)")"
  psql_in "$META" -c "insert into result values $stored" >/dev/null

  begin_phase
  "$HERALD" --config "$WORK/sweep.toml" --database-url "$URL" sweep >/dev/null
  end_phase sweep "$total"
  left="$(psql_in "$DB" -c "select count(*) from herald.intents")"
  [[ "$left" == "0" ]] || die "the sweep left $left rows"

  begin_phase
  psql_in "$DB" -c "vacuum herald.queue, herald.intents, herald.attempts" >/dev/null
  end_phase vacuum_after_sweep "$total"

  psql_in postgres -c "drop database \"$DB\" with (force)" >/dev/null
  DB=""
done

# --- the report --------------------------------------------------------------------------------
psql -X -q -d "$META" -P footer=off <<'EOF'
create function pg_temp.span(lo float8, hi float8, digits int) returns text language sql as $$
  select case when round(lo::numeric, digits) = round(hi::numeric, digits) then round(lo::numeric, digits)::text
              else round(lo::numeric, digits) || '–' || round(hi::numeric, digits) end $$;
create temp view phases as select phase, min(ord) as ord from result group by phase;
create temp view figures as
  select r.phase, p.ord, r.metric, pg_temp.span(min(r.value), max(r.value),
         case when r.metric in ('n', 'cpu_us', 'wal_b', 'stmt_wal_b', 'daemon_cpu_us') or r.phase = 'stored' then 0
              when r.metric = 'stmts' or r.metric ~ '\.' then 2 else 1 end) as v
  from result r join phases p using (phase) group by r.phase, p.ord, r.metric;
\echo 'Per notification (least–greatest over the runs)'
select phase,
       max(v) filter (where metric = 'n') as n,
       coalesce(max(v) filter (where metric = 'stmt_us'), '-') as "stmt µs",
       coalesce(max(v) filter (where metric = 'cpu_us'), '-') as "cpu µs",
       max(v) filter (where metric = 'wal_b') as "WAL B",
       coalesce(max(v) filter (where metric = 'stmt_wal_b'), '-') as "stmt WAL B",
       max(v) filter (where metric = 'fpi_k') as "FPI/1k",
       max(v) filter (where metric = 'commits_k') as "commits/1k",
       coalesce(max(v) filter (where metric = 'stmts'), '-') as stmts,
       coalesce(max(v) filter (where metric = 'daemon_cpu_us'), '-') as "daemon cpu µs",
       max(v) filter (where metric = 'seconds') as "wall s"
from figures where phase <> 'stored' group by phase, ord order by ord;
\echo 'Rows written per notification: inserted / updated (heap-only) / deleted'
select phase, string_agg(tbl || ' ' || cells, ', ' order by tbl) as "rows"
from (select phase, ord, split_part(metric, '.', 1) as tbl,
             coalesce(max(v) filter (where metric ~ '\.ins$'), '0') || ' / '
             || coalesce(max(v) filter (where metric ~ '\.upd$'), '0')
             || ' (' || coalesce(max(v) filter (where metric ~ '\.hot$'), '0') || ') / '
             || coalesce(max(v) filter (where metric ~ '\.del$'), '0') as cells
      from figures where phase <> 'stored' and metric ~ '\.(ins|upd|hot|del)$'
      group by phase, ord, tbl) s
group by phase, ord order by ord;
\echo 'Stored per finished notification (intent + 1 attempt), bytes, after VACUUM'
select metric as part, v as bytes from figures where phase = 'stored' order by metric;
\echo 'Statements, all runs together (those with at least 1 % of their phase''s server time)'
select s.phase, s.query, sum(s.calls) as calls,
       round(sum(s.rows)::numeric / sum(s.calls), 1) as "rows/call",
       round((sum(s.ms) * 1000 / sum(s.calls))::numeric, 1) as "µs/call",
       round(sum(s.wal)::numeric / sum(s.calls)) as "WAL B/call"
from stmt s join phases p using (phase)
group by s.phase, p.ord, s.query
having sum(s.ms) >= 0.01 * (select sum(s2.ms) from stmt s2 where s2.phase = s.phase)
order by p.ord, sum(s.ms) desc;
EOF
