#!/usr/bin/env bash
# run_enq.sh CLIENTS DUR ROUNDS : base and each herald enqueue variant back to back, order reversed every round
cd "$(dirname "$0")"
C=$1; T=$2; R=$3
V="base:enq_base cur:enq_cur curc:enq_cur curh:enq_hash q:enq_q qc:enq_q qh:enq_qhash"
for r in $(seq 1 $R); do
  [ $((r % 2)) = 0 ] && L=$(echo $V | tr ' ' '\n' | tac | tr '\n' ' ') || L=$V
  for p in $L; do
    case $p in base:*) export CNT="select count(*) from ins_bench";; *) export CNT="select count(*) from herald.notifications";; esac
    ./run_cpu.sh exp_e $C $T $p
  done
done
