#!/usr/bin/env bash
# What two checkouts' platforms burn idle, on alternating fresh platforms, side by side:
#
#   bench/idle.sh BEFORE_CHECKOUT AFTER_CHECKOUT [ROUNDS] [DURATION] [OUT_DIR]
#
# Each checkout needs its own `make install`. Each platform settles for 20 s after it is
# ready (first connections, warm-up), then `mercato bench idle` measures it for DURATION
# seconds and saves the figures in OUT_DIR; the medians are printed at the end.
set -euo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd)
rounds=${3:-2}; duration=${4:-30}
out=${5:-$after/bench/reports/idle-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
cli="$after/.venv/bin/mercato"
. "$(dirname "$0")/two_builds.sh"

run_one() {  # run_one LABEL CHECKOUT N
  local label=$1 checkout=$2 n=$3 home
  home=$(start_platform "$label" "$checkout" "$n")
  sleep 20
  "$cli" bench idle --duration "$duration" --home "$home" --save "$out/$label-$n.json" \
      >"$out/$label-$n.out" 2>&1 || { echo "see $out/$label-$n.out"; exit 2; }
  (cd "$checkout" && .venv/bin/mercato down --home "$home" >/dev/null 2>&1) || true
  rm -rf "$home"
  echo "$label run $n: $(grep -o 'platform *│ *[0-9.]*' "$out/$label-$n.out" | tr -s ' │' ' ')"
}

for i in $(seq 1 "$rounds"); do
  if (( i % 2 )); then run_one before "$before" "$i"; run_one after "$after" "$i"
  else run_one after "$after" "$i"; run_one before "$before" "$i"; fi
done
args=()
for f in "$out"/before-*.json; do args+=(--before "$f"); done
for f in "$out"/after-*.json; do args+=(--after "$f"); done
COLUMNS=${COLUMNS:-120} "$cli" bench idle "${args[@]}"
