#!/usr/bin/env bash
# Smoke check of the lwIP echo peer on a clean link, in a network namespace made for this run:
#   sudo benches/lwip/smoke.sh [OUTDIR]     (OUTDIR for the build, default target/lwip)
# Builds lwip_echo, then from the kernel side: the seed echo, a 20 MB byte-verified bulk echo
# (python and nc), 32 concurrent clients, a client that resets,
# 20000 malformed frames; prints throughput and lwip_echo's counters.
# Environment: LWIP_INPUT (locked or mbox, lwip_echo --input), SMOKE_BULK_BYTES (20 MB),
# SMOKE_CLIENTS (32), SMOKE_CLIENT_BYTES (1 MB).
#
#   [namespace: tap0 192.168.69.100/24]  --TAP--  [lwip_echo 192.168.69.1:8000]
#
# The namespace (and the TAP in it) vanishes when this script exits; the host is not touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ -z "${LWIP_SMOKE_IN_NETNS:-}" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "$0: needs root (network namespace, TAP)" >&2
    exit 2
  fi
  out=${1:-$here/../../target/lwip}
  "$here/build.sh" "$out" >/dev/null
  exec timeout 300 unshare --net env LWIP_SMOKE_IN_NETNS=1 "$0" "$out"
fi

# --- inside the new namespace ---------------------------------------------------------------
out=$1
bulk_bytes=${SMOKE_BULK_BYTES:-$((20 << 20))}
clients=${SMOKE_CLIENTS:-32}
client_bytes=${SMOKE_CLIENT_BYTES:-$((1 << 20))}
log=$(mktemp)

ip link set lo up
ip tuntap add dev tap0 mode tap
ip link set tap0 up
ip addr add 192.168.69.100/24 dev tap0

"$out/lwip_echo" --tap tap0 --ip 192.168.69.1 --prefix 24 --gw 192.168.69.100 --port 8000 \
  --input "${LWIP_INPUT:-locked}" >"$log" 2>&1 &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"
    for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server" 2>/dev/null || true
  fi
  wait "$server" 2>/dev/null || true
}
trap 'stop_server; rm -f "$log" "${data:-}" "${echoed:-}"' EXIT

for _ in $(seq 100); do grep -q ready "$log" && break; sleep 0.1; done
grep -q ready "$log" || { cat "$log"; echo "smoke: lwip_echo never got ready" >&2; exit 1; }
cat "$log"

check=(python3 "$here/echo_check.py" 192.168.69.1 8000)
failed=0
"${check[@]}" seed || failed=1
"${check[@]}" bulk "$bulk_bytes" || failed=1
if command -v nc >/dev/null && nc -h 2>&1 | grep -q OpenBSD; then
  data=$(mktemp); echoed=$(mktemp)
  head -c "$bulk_bytes" /dev/urandom >"$data"
  start=$(date +%s.%N)
  if timeout 60 nc -N 192.168.69.1 8000 <"$data" >"$echoed" && cmp -s "$data" "$echoed"; then
    end=$(date +%s.%N)
    echo "nc: ok, $bulk_bytes bytes byte-exact, $(echo "$bulk_bytes / ($end - $start) / 1000000" | bc -l | cut -c1-5) MB/s"
  else
    echo "nc: FAIL, echo differs or timed out ($(stat -c %s "$echoed") of $bulk_bytes bytes)"
    failed=1
  fi
else
  echo "nc: skipped (netcat-openbsd, with -N, is not installed)"
fi
"${check[@]}" many "$clients" "$client_bytes" || failed=1
"${check[@]}" reset || failed=1
"${check[@]}" garbage tap0 02:00:00:6c:77:01 20000 || failed=1

stop_server
tail -n 1 "$log"
grep -q 'stopped:' "$log" || { echo "smoke: lwip_echo did not report its counters" >&2; failed=1; }
[ "$failed" = 0 ] && echo "smoke: all checks passed" || echo "smoke: FAILED"
exit "$failed"
