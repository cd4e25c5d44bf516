#!/usr/bin/env bash
# run_sweep.sh DB MODE BATCH TOTAL -> rows/s for one sweep slice (the next TOTAL oldest finished rows)
export PGHOST=127.0.0.1 PGUSER=postgres
psql -XqAt -d $1 -c "checkpoint" >/dev/null
s=$(date +%s.%N)
psql -XqAt -v ON_ERROR_STOP=1 -d $1 -c "call exp_sweep('$2', $3, $4, ${KEEP:-2592000})" || exit 1
e=$(date +%s.%N)
awk -v db=$1 -v m=$2 -v b=$3 -v n=$4 -v s=$s -v e=$e -v l="$(cut -d' ' -f1 /proc/loadavg)" \
  'BEGIN{printf "%-11s %-8s batch=%-5d rows=%d secs=%.1f rows_per_s=%.0f load=%s\n", db, m, b, n, e-s, n/(e-s), l}'
