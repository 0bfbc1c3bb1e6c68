# Sourced by bench/alternate.sh and bench/idle.sh once $before and $after are set: what both
# need to run two checkouts' platforms on equal terms.

# Both builds get the same Prometheus, which scrapes every service: a checkout without one
# (`make observability-tools` never ran there) would run an unscraped, cheaper platform.
if [ -z "${MERCATO_PROMETHEUS_DIR:-}" ]; then
  for checkout in "$after" "$before"; do
    if [ -x "$checkout/.tools/prometheus/prometheus" ]; then
      export MERCATO_PROMETHEUS_DIR="$checkout/.tools/prometheus"; break
    fi
  done
fi
echo "prometheus for both builds: ${MERCATO_PROMETHEUS_DIR:-none (neither checkout has one; run make observability-tools)}"

free_port() { "$after/.venv/bin/python" -c \
  'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_platform LABEL CHECKOUT N: starts a fresh platform of CHECKOUT in a scratch home and
# prints the home; the start-up log is $out/LABEL-N.up.log.
# A port free when asked may be taken before the platform binds it (the edge's port and the
# ones after it): such a start is tried again on other ports, up to three times.
start_platform() {
  local home attempt
  for attempt in 1 2 3; do
    home=$(mktemp -d "/tmp/mercato-bench-$1-XXXX")
    if (cd "$2" && .venv/bin/mercato up --detach --port "$(free_port)" --home "$home" \
          >"$out/$1-$3.up.log" 2>&1); then
      echo "$home"; return 0
    fi
    (cd "$2" && .venv/bin/mercato down --home "$home" >/dev/null 2>&1) || true
    grep -q "is in use by another program" "$out/$1-$3.up.log" || break
    echo "$1 run $3: a port was taken meanwhile (attempt $attempt); trying other ports" >&2
    rm -rf "$home"
  done
  echo "mercato up failed: see $out/$1-$3.up.log" >&2
  return 1
}
