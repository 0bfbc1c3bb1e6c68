#!/usr/bin/env bash
# Alternating `mercato bench orders` runs of two checkouts (the build before and the build
# after), each on a fresh platform of its own, then both side by side (medians, ratios):
#
#   bench/alternate.sh BEFORE_CHECKOUT AFTER_CHECKOUT [ROUNDS] [RATE] [DURATION] [OUT_DIR]
#
# Each checkout needs its own `make install` (its .venv). Round i runs before then after when
# i is odd and after then before when it is even, so a noisy minute of a shared machine hits
# both builds. Every run's figures are saved (--save-baseline) in OUT_DIR; the comparison is
# printed by `mercato bench compare` and written to OUT_DIR/compare.json.
set -euo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd)
rounds=${3:-2}; rate=${4:-12}; duration=${5:-30}
out=${6:-$after/bench/reports/alternate-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
bench_cli="$after/.venv/bin/mercato"   # the newer CLI has --save-baseline
# A cheap argon2id for the run's customers (set-up only; not in the measured window).
export IDENTITY_ARGON2_TIME_COST=1 IDENTITY_ARGON2_MEMORY_COST_KIB=8192 \
       IDENTITY_ARGON2_PARALLELISM=1
. "$(dirname "$0")/two_builds.sh"

run_one() {  # run_one LABEL CHECKOUT N
  local label=$1 checkout=$2 n=$3 home
  home=$(start_platform "$label" "$checkout" "$n")
  local rc=0
  "$bench_cli" bench orders --rate "$rate" --duration "$duration" --home "$home" \
      --report "$out/$label-$n.report.json" --save-baseline "$out/$label-$n.json" \
      >"$out/$label-$n.out" 2>&1 || rc=$?
  (cd "$checkout" && .venv/bin/mercato down --home "$home" >/dev/null 2>&1) || true
  # A failed run's home stays for whoever looks into it (mercato up, then mercato check).
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; then rm -rf "$home"; else echo "kept: $home"; fi
  echo "$label run $n: exit $rc, $(grep -o 'platform total *│ *[0-9.]*' "$out/$label-$n.out" \
        | tr -s ' │' ' ' || true)"
  # 0: met the bar; 3: ran clean below it. 1 (violations, orders never terminal) or 2
  # (could not run) ends the comparison here, unless KEEP_GOING=1 lets a 1 go on: an old
  # build measured against today's (issue 17's baseline) breaks rules that today's
  # `mercato check` added after it; the violations stay in the run's .out.
  if [ "$rc" -eq 1 ] && [ "${KEEP_GOING:-0}" = 1 ]; then
    echo "$label run $n: violations (KEEP_GOING=1): see $out/$label-$n.out"
  elif [ "$rc" -eq 1 ] || [ "$rc" -eq 2 ]; then echo "see $out/$label-$n.out"; exit "$rc"; fi
}

for i in $(seq 1 "$rounds"); do
  if (( i % 2 )); then run_one before "$before" "$i"; run_one after "$after" "$i"
  else run_one after "$after" "$i"; run_one before "$before" "$i"; fi
done
args=()
for f in "$out"/before-[0-9]*.json; do [[ $f == *report* ]] || args+=(--before "$f"); done
for f in "$out"/after-[0-9]*.json; do [[ $f == *report* ]] || args+=(--after "$f"); done
COLUMNS=${COLUMNS:-120} "$bench_cli" bench compare "${args[@]}" --report "$out/compare.json"
