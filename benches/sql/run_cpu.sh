#!/usr/bin/env bash
# run_cpu.sh PREFIX CLIENTS DUR "variant:script ..."
# Runs pgbench and samples, between t=2s and t=DUR-1s: notifications done (attempt rows) and the
# CPU time (utime+stime from /proc) of the pgbench backends. Reports rate and server CPU µs per
# notification; the latter is much less sensitive to other load on the box than the rate.
set -uo pipefail
export PGHOST=127.0.0.1 PGUSER=postgres
P=$1; C=$2; T=$3; shift 3
cd "$(dirname "$0")" && bash gen_scripts.sh   # scripts/disp_{cur,a,b,blog,b2,b2opt,b3}.sql
HZ=$(getconf CLK_TCK)
ticks() { # sum utime+stime of backends of db $1 run by application $2 (default pgbench)
  local s=0
  for pid in $(psql -XAt -d postgres -c "select pid from pg_stat_activity where datname='$1' and application_name='${2:-pgbench}'"); do
    t=$(awk '{print $14+$15}' /proc/$pid/stat 2>/dev/null); [ -n "$t" ] && s=$(( s + t ))
  done; echo $s; }
cnt() { psql -XAt -d $1 -c "${CNT:-select count(*) from herald.attempts}"; }
for pair in $@; do
  v=${pair%%:*}; s=${pair#*:}; db=${P}_$v
  psql -XqAt -d $db -c "vacuum herald.notifications" >/dev/null 2>&1
  psql -XqAt -d $db -c "vacuum herald.queue" -c "checkpoint" >/dev/null 2>&1
  pgbench -n -M prepared -c $C -j $(( C < 2 ? C : 2 )) -T $T -f scripts/$s.sql $db > /tmp/exp_pgb_$$.out 2>&1 &
  bp=$!
  vt=""; [ -n "${VAC:-}" ] && { case $v in cur*) vt=herald.notifications;; *) vt=herald.queue;; esac; }
  if [ -n "$vt" ]; then
    ( for i in $(seq 1 $((T+2))); do echo "vacuum $vt;"; sleep ${VAC}; done ) | PGAPPNAME=vacloop psql -XqAt -d $db >/dev/null 2>&1 &
    vp=$!
  fi
  sleep 2; t0=$(date +%s.%N); k0=$(ticks $db); n0=$(cnt $db); vk0=$(ticks $db vacloop)
  sleep $(( T - 3 )); t1=$(date +%s.%N); k1=$(ticks $db); n1=$(cnt $db); vk1=$(ticks $db vacloop)
  wait $bp
  [ -n "$vt" ] && kill $vp 2>/dev/null; wait 2>/dev/null
  err=$(grep -ci "error" /tmp/exp_pgb_$$.out)
  awk -v v=$v -v c=$C -v t0=$t0 -v t1=$t1 -v k=$((k1-k0)) -v n=$((n1-n0)) -v hz=$HZ -v e=$err -v vk=$((vk1-vk0)) -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN{printf "%-8s c=%d rate=%6.0f/s cpu_us_per_item=%6.1f vacuum_us_per_notif=%5.1f errors=%d load=%s\n", v, c, n/(t1-t0), (n>0? k*1e6/hz/n : 0), (n>0? vk*1e6/hz/n : 0), e, l}'
done
rm -f /tmp/exp_pgb_$$.out
