#!/usr/bin/env bash
# one-off: plain vs GOMAXPROCS=1 for nats/prometheus, same checkout
set -u
before=/work/wt/new; after=/work/wt/new; out=/tmp/gomax2; mkdir -p $out
export IDENTITY_ARGON2_TIME_COST=1 IDENTITY_ARGON2_MEMORY_COST_KIB=8192 IDENTITY_ARGON2_PARALLELISM=1
export MERCATO_PROMETHEUS_DIR=/work/main/.tools/prometheus
. /work/main/bench/two_builds.sh
run_one() { local label=$1 n=$2 home
  if [ $label = before ]; then export GOMAXPROCS=2; else unset GOMAXPROCS; fi
  home=$(start_platform "$label" /work/wt/new "$n")
  unset GOMAXPROCS
  /work/wt/new/.venv/bin/mercato bench orders --rate 12 --duration 30 --home "$home" --report $out/$label-$n.report.json --save-baseline $out/$label-$n.json > $out/$label-$n.out 2>&1
  /work/wt/new/.venv/bin/mercato down --home "$home" >/dev/null 2>&1; rm -rf "$home"
  echo "$label $n $(grep -o 'platform total *│ *[0-9.]*' $out/$label-$n.out | tr -s ' │' ' ') nats $(grep -o 'nats *│ *[0-9.]*' $out/$label-$n.out | tr -s ' │' ' ')"
}
for i in 1 2 3 4; do
  if (( i % 2 )); then run_one before $i; run_one after $i; else run_one after $i; run_one before $i; fi
done
args=(); for f in $out/before-[0-9].json; do args+=(--before $f); done; for f in $out/after-[0-9].json; do args+=(--after $f); done
COLUMNS=160 /work/wt/new/.venv/bin/mercato bench compare "${args[@]}" > $out/compare.txt 2>&1
