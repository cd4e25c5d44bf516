#!/bin/bash
# History designs compared: enqueue latency while 1,000,000 expired rows are swept.
#
#   a   today's layout: one table holds the row and its UNIQUE key; the sweep deletes by id
#       range, 1,000 a transaction, attempts going by the cascade (herald sweep's statement).
#   ap  the same, with 50 ms between batches.
#   b   a narrow key table (the UNIQUE key and the id) beside intents and attempts partitioned by
#       id range: the sweep deletes the expired rows' keys, 1,000 a transaction, then detaches
#       and drops the old partitions whole.
#
# One pgbench client enqueues 200 a second (-M prepared, as herald's functions cache their
# plans); latency is pgbench's minus its schedule lag, p99 before the sweep (20 s) and while it
# runs. Needs a database it may fill and empty (DB, default `proto`) on a server that is not
# shared: `initdb` a throwaway cluster and point PGHOST/PGPORT at it.
#
#   PGHOST=127.0.0.1 PGPORT=5499 bash benches/history_partitions/run.sh a
set -euo pipefail
d=$1; S=${1:0:1}; DB=${DB:-proto}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
P="psql -q -U postgres -d $DB -v ON_ERROR_STOP=1"
B="pgbench -U postgres -n -M prepared -c 1 -R 200 -f $here/${S}_enqueue.sql -l"
$P -f "$here/common.sql" >/dev/null
$P -f "$here/${S}_schema.sql" >/dev/null
$P -Atc "checkpoint"; sleep 5
(cd "$work" && $B -T 20 --log-prefix=before "$DB" >/dev/null 2>&1)
$P -Atc "checkpoint"
(cd "$work" && $B -T 80 --log-prefix=during "$DB" >/dev/null 2>&1) &
pb=$!
sleep 2
w0=$($P -Atc "select pg_current_wal_lsn()")
t0=$(date +%s.%N)
$P -c "call sweep_$d()"
t1=$(date +%s.%N)
w1=$($P -Atc "select pg_current_wal_lsn()")
wait $pb
wal=$($P -Atc "select pg_wal_lsn_diff('$w1','$w0')")
python3 - "$d" "$t0" "$t1" "$wal" "$work" <<'PY'
import sys, glob
d, t0, t1, wal, work = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def lat(prefix, lo=None, hi=None):
    out = []
    for f in glob.glob(f"{work}/{prefix}*"):
        for line in open(f):
            c = line.split()
            if not c[2].isdigit():
                continue
            done = int(c[4]) + int(c[5]) / 1e6
            if lo is None or lo <= done <= hi:
                out.append((int(c[2]) - int(c[6])) / 1000.0)
    return sorted(out)
def p(v, q): return v[min(len(v) - 1, int(q * len(v)))]
b = lat("before"); w = lat("during", t0, t1)
print(f"{d}: sweep {t1-t0:.1f} s, WAL {wal/1e6:.0f} MB | before p50 {p(b,.5):.2f} p99 {p(b,.99):.2f} ms "
      f"(n={len(b)}) | during p50 {p(w,.5):.2f} p99 {p(w,.99):.2f} ms (n={len(w)}) | p99 ratio {p(w,.99)/p(b,.99):.2f}")
PY
