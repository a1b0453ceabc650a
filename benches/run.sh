#!/usr/bin/env bash
# The smolecho benchmark suite: tap_server (smoltcp on a TAP) against the kernel baseline (the
# seed's thread-per-client echo server, benches/kernel_echo.py), in the same run, interleaved
# and repeated, through the same veth link. Needs root (network namespaces). BENCHMARKS.md
# describes the topology and the figures.
#
#   sudo benches/run.sh                 # 5 rounds, full sizes (about 5 minutes)
#   sudo BENCH_QUICK=1 benches/run.sh   # smoke: 1 round, small sizes, < 90 s; fails on any failure
#
# Environment: BENCH_ROUNDS (5), BENCH_QUICK (0), BENCH_KERNEL_BUFLEN (65536, the baseline's
# recv size: its strongest form), BENCH_OFFLOAD (1: also measure `tap_server --offload` on a
# second TAP in the same run; 0: skip it), BENCH_SERVER_ARGS (extra options for both tap_servers, default none),
# BENCH_OFFLOAD_ARGS (extra options for `tap_server --offload` only, e.g. --buffer-size 1M),
# BENCH_NICE (0: the nice value of all three servers, the same for each), CARGO_TARGET_DIR,
# BENCH_NO_BUILD=1 (use the binaries already built), BENCH_FAMILY (4, or 6 for IPv6), BENCH_PIN (0, split or same: CPU
# placement, see below), BENCH_ONLY (a subset of: bulk tcp-rtt
# udp-rtt churn many idle), BENCH_SERVER_BIN (another tap_server build, for experiments).
#
# Everything happens in two namespaces created for this run and deleted on exit, whatever
# happens:
#
#   [cli: loadgen]  10.77.0.1 (+ .11-.18 as churn sources)
#        | veth, MTU 1500
#   [srv: 10.77.0.2  kernel_echo.py :8000   ip_forward=1 (this namespace only)
#        | tap0 192.168.69.100, MTU 1500
#        tap_server 192.168.69.1 :8000
#        | tap1 192.168.70.100, MTU 1500 (BENCH_OFFLOAD=1)
#        tap_server --offload 192.168.70.1 :8000 ]
#
# The host's own interfaces, addresses and routes are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=${BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
  rounds=${BENCH_ROUNDS:-1}
  bulk_bytes=$((32 << 20)); rtt_count=500; churn_secs=1; many_clients=256; many_timeout=40
  idle_secs=2
else
  rounds=${BENCH_ROUNDS:-5}
  bulk_bytes=$((256 << 20)); rtt_count=5000; churn_secs=3; many_clients=256; many_timeout=150
  idle_secs=10
fi
buflen=${BENCH_KERNEL_BUFLEN:-65536}
offload=${BENCH_OFFLOAD:-1}
port=8000

if [ "$(id -u)" != 0 ]; then
  echo "benches/run.sh: needs root (network namespaces); run it with sudo" >&2
  exit 2
fi
for tool in ip python3 cargo; do
  command -v "$tool" >/dev/null || { echo "benches/run.sh: $tool is missing" >&2; exit 2; }
done

# --- build -------------------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  echo "== building (release)"
  cargo build --release --example tap_server >&2
fi
server_bin=${BENCH_SERVER_BIN:-$CARGO_TARGET_DIR/release/examples/tap_server}
only=" ${BENCH_ONLY:-bulk tcp-rtt udp-rtt churn many idle} "
want() { [[ $only == *" $1 "* ]]; }
loadgen=$(cargo bench --bench loadgen --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="loadgen" and m.get("executable"):
        print(m["executable"])')
[ -x "$server_bin" ] && [ -x "$loadgen" ] || { echo "benches/run.sh: build failed" >&2; exit 1; }

# --- namespaces --------------------------------------------------------------------------
tag=$$
cli=smolecho-bench-cli-$tag
srv=smolecho-bench-srv-$tag
work=$(mktemp -d /tmp/smolecho-bench.XXXXXX)
pids=()
cleanup() {
  set +e
  # The servers started here, then anything else still inside this run's namespaces.
  local ns_pids
  ns_pids=$(ip netns pids "$srv" 2>/dev/null; ip netns pids "$cli" 2>/dev/null)
  for pid in "${pids[@]}" $ns_pids; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}" $ns_pids; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
  done
  ip netns del "$cli" 2>/dev/null
  ip netns del "$srv" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$cli"
ip netns add "$srv"
in_cli() { ip netns exec "$cli" "$@"; }
in_srv() { ip netns exec "$srv" "$@"; }
# The veth pair is created inside the client namespace with its peer directly in the server
# namespace: it never exists in the host's namespace.
ip -n "$cli" link add vc type veth peer name vs netns "$srv"
ip -n "$cli" link set lo up
ip -n "$srv" link set lo up
ip -n "$cli" link set vc mtu 1500 up
ip -n "$srv" link set vs mtu 1500 up
ip -n "$cli" addr add 10.77.0.1/24 dev vc
sources=()
for i in 11 12 13 14 15 16 17 18; do
  ip -n "$cli" addr add 10.77.0.$i/24 dev vc
  sources+=(10.77.0.$i)
done
ip -n "$srv" addr add 10.77.0.2/24 dev vs
ip -n "$cli" route add 192.168.69.0/24 via 10.77.0.2
ip -n "$cli" route add 192.168.70.0/24 via 10.77.0.2
in_srv sysctl -qw net.ipv4.ip_forward=1
# IPv6 too (BENCH_FAMILY=6 measures over it): fdab::/64 on the veth, tap_server's fdaa::/64
# behind the server namespace.
ip -n "$cli" -6 addr add fdab::1/64 dev vc nodad
sources6=()
for i in 11 12 13 14 15 16 17 18; do
  ip -n "$cli" -6 addr add fdab::$i/64 dev vc nodad
  sources6+=(fdab::$i)
done
ip -n "$srv" -6 addr add fdab::2/64 dev vs nodad
ip -n "$cli" -6 route add fdaa::/64 via fdab::2
ip -n "$cli" -6 route add fdac::/64 via fdab::2
in_srv sysctl -qw net.ipv6.conf.all.forwarding=1

# --- servers -----------------------------------------------------------------------------
wait_line() { # FILE PATTERN PID WHAT
  for _ in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "benches/run.sh: $4 did not start:" >&2
  cat "$1" >&2
  exit 1
}
# CPU placement moves the round-trip and churn figures more than anything else (on these
# VMs a wake-up across CPUs costs ~15 us), so it is a choice: BENCH_PIN=0 (default: the
# scheduler decides, as for a user), split (both servers on CPU 0, the load generator on
# CPU 1) or same (everything on CPU 0). Both servers always get the same placement.
# `ip netns exec` and `taskset` exec in place, so $! is the server itself.
case "${BENCH_PIN:-0}" in
  split) pin_srv=(taskset -c 0); pin_cli=(taskset -c 1)
         placement="servers on CPU 0, load generator on CPU 1" ;;
  same)  pin_srv=(taskset -c 0); pin_cli=(taskset -c 0); placement="everything on CPU 0" ;;
  *)     pin_srv=(); pin_cli=(); placement="not pinned" ;;
esac
# The servers' priority, the same for all three (BENCH_NICE, default 0): at the default the
# load generator's threads, woken by a server's own writes, preempt it (see BENCHMARKS.md).
# `nice` execs in place too.
if [ "${BENCH_NICE:-0}" != 0 ]; then
  pin_srv+=(nice -n "$BENCH_NICE")
  placement+=", servers at nice $BENCH_NICE"
fi
# shellcheck disable=SC2086 # BENCH_SERVER_ARGS is a list of options
ip netns exec "$srv" "${pin_srv[@]}" "$server_bin" --gateway 192.168.69.100 --gateway fdaa::100 \
  ${BENCH_SERVER_ARGS:-} >"$work/tap_server.log" 2>&1 &
smol_pid=$!
pids+=("$smol_pid")
wait_line "$work/tap_server.log" "listening on" "$smol_pid" tap_server
servers=(kernel smolecho)
if [ "$offload" = 1 ]; then
  # The same server on the offload TAP device, on its own TAP and subnets.
  # shellcheck disable=SC2086
  ip netns exec "$srv" "${pin_srv[@]}" "$server_bin" --offload --tap tap1 \
    --ip 192.168.70.1/24 --ip fdac::1/64 --host-ip 192.168.70.100/24 --host-ip fdac::100/64 \
    --gateway 192.168.70.100 --gateway fdac::100 ${BENCH_SERVER_ARGS:-} ${BENCH_OFFLOAD_ARGS:-} \
    >"$work/tap_server_offload.log" 2>&1 &
  off_pid=$!
  pids+=("$off_pid")
  wait_line "$work/tap_server_offload.log" "listening on" "$off_pid" "tap_server --offload"
  servers+=(offload)
fi
ip netns exec "$srv" "${pin_srv[@]}" python3 "$root/benches/kernel_echo.py" "$port" "$buflen" \
  >"$work/kernel.log" 2>&1 &
kern_pid=$!
pids+=("$kern_pid")
wait_line "$work/kernel.log" "listening" "$kern_pid" kernel_echo.py

if [ "${BENCH_FAMILY:-4}" = 6 ]; then
  declare -A addr=([kernel]=[fdab::2] [smolecho]=[fdaa::1] [offload]=[fdac::1])
  sources=("${sources6[@]}")
else
  declare -A addr=([kernel]=10.77.0.2 [smolecho]=192.168.69.1 [offload]=192.168.70.1)
fi
results=$work/results
: >"$results"

measure() { # ROUND SERVER LOADGEN-ARGS...
  local round=$1 server=$2 out
  shift 2
  if ! out=$(in_cli "${pin_cli[@]}" timeout 300 "$loadgen" "$@" 2>"$work/err"); then
    echo "FAILED: $server: loadgen $* : $(cat "$work/err")" >&2
    echo "round=$round server=$server failed=$1 $out" >>"$results"
    return 0
  fi
  echo "   $server: $out" >&2
  echo "round=$round server=$server $out" >>"$results"
}

cpu_ns() { # PID: CPU time of all its threads, in ns
  local total=0 t
  for t in /proc/"$1"/task/*/schedstat; do
    total=$((total + $(cut -d' ' -f1 "$t")))
  done
  echo "$total"
}

# Warm up both paths (ARP and neighbour discovery, page faults).
for s in "${servers[@]}"; do
  in_cli "$loadgen" tcp-rtt "${addr[$s]}:$port" 10 >/dev/null
  in_cli "$loadgen" udp-rtt "${addr[$s]}:$port" 10 >/dev/null
done

echo "== $rounds round(s); $(nproc) CPUs, $placement; load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$rounds"); do
  # Rotate which server goes first, so a slow drift in machine load cancels out.
  shift_by=$(((round - 1) % ${#servers[@]}))
  order=("${servers[@]:shift_by}" "${servers[@]:0:shift_by}")
  echo "-- round $round (${order[*]})" >&2
  if want bulk; then
    for s in "${order[@]}"; do measure "$round" "$s" bulk "${addr[$s]}:$port" "$bulk_bytes"; done
  fi
  if want tcp-rtt; then
    for s in "${order[@]}"; do measure "$round" "$s" tcp-rtt "${addr[$s]}:$port" "$rtt_count"; done
  fi
  if want udp-rtt; then
    for s in "${order[@]}"; do measure "$round" "$s" udp-rtt "${addr[$s]}:$port" "$rtt_count"; done
  fi
  if want churn; then
    for s in "${order[@]}"; do
      measure "$round" "$s" churn "${addr[$s]}:$port" "$churn_secs" 4 "${sources[@]}"
    done
  fi
  if want many; then
    for s in "${order[@]}"; do
      measure "$round" "$s" many "${addr[$s]}:$port" "$many_clients" "$many_timeout"
    done
  fi
  want idle || continue
  # Idle CPU: both servers at once, with no traffic at all.
  sleep 1
  k0=$(cpu_ns "$kern_pid"); s0=$(cpu_ns "$smol_pid"); o0=$([ "$offload" = 1 ] && cpu_ns "$off_pid" || echo 0)
  sleep "$idle_secs"
  k1=$(cpu_ns "$kern_pid"); s1=$(cpu_ns "$smol_pid"); o1=$([ "$offload" = 1 ] && cpu_ns "$off_pid" || echo 0)
  idle_pairs=("kernel $k0 $k1" "smolecho $s0 $s1")
  [ "$offload" = 1 ] && idle_pairs+=("offload $o0 $o1")
  for pair in "${idle_pairs[@]}"; do
    set -- $pair
    pct=$(python3 -c "print(f'{($3-$2)/($idle_secs*1e9)*100:.3f}')")
    echo "   $1: idle_cpu_pct=$pct" >&2
    echo "round=$round server=$1 idle_cpu_pct=$pct" >>"$results"
  done
done

kill -0 "$smol_pid" 2>/dev/null || { echo "tap_server died:" >&2; cat "$work/tap_server.log" >&2; exit 1; }
kill -TERM "$smol_pid"
wait "$smol_pid" 2>/dev/null || true
grep -E "^final:" "$work/tap_server.log" >&2 || true
if [ "$offload" = 1 ]; then
  kill -0 "$off_pid" 2>/dev/null || { echo "tap_server --offload died:" >&2; cat "$work/tap_server_offload.log" >&2; exit 1; }
  kill -TERM "$off_pid"
  wait "$off_pid" 2>/dev/null || true
  echo "offload: $(grep -E "^final:" "$work/tap_server_offload.log")" >&2 || true
fi
echo "kernel baseline: recv($buflen); family: IPv${BENCH_FAMILY:-4}" >&2
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# --- table ---------------------------------------------------------------------------------
python3 - "$results" "$quick" "$offload" <<'EOF'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
failed = [r for r in rows if "failed" in r]
metrics = [
    ("bulk echo, 1 connection (Mbit/s)", "bulk_mbit", ">= 1.0x", statistics.median),
    ("TCP RTT 64 B p50 (us)", "tcp_rtt_p50_us", "<= 0.8x", statistics.median),
    ("TCP RTT 64 B p99 (us)", "tcp_rtt_p99_us", "", statistics.median),
    ("UDP RTT 64 B p50 (us)", "udp_rtt_p50_us", "<= 0.8x", statistics.median),
    ("churn: connect, echo 32 B, close (/s)", "churn_per_s", ">= 3.0x", statistics.median),
    ("256 clients on 8 slots: served (worst round)", "many_served", "all", min),
    ("256 clients on 8 slots: time to the last one served (s)", "many_secs", "", statistics.median),
    ("idle CPU (%)", "idle_cpu_pct", "<= 0.5 %", statistics.median),
]
def agg(server, key, how):
    v = [float(r[key]) for r in rows if r.get("server") == server and key in r]
    return how(v) if v else None
fmt = lambda x: "-" if x is None else (f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}")
offload = sys.argv[3] == "1"
ratio = lambda s, k: "-" if not k or s is None else f"{s / k:.2f}x"
print()
if offload:
    print("| figure | kernel | smolecho | ratio | smolecho --offload | ratio | goal |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
else:
    print("| figure | kernel | smolecho | ratio | goal |")
    print("| --- | ---: | ---: | ---: | --- |")
for name, key, goal, how in metrics:
    k, s = agg("kernel", key, how), agg("smolecho", key, how)
    row = f"| {name} | {fmt(k)} | {fmt(s)} | {ratio(s, k)} |"
    if offload:
        o = agg("offload", key, how)
        row += f" {fmt(o)} | {ratio(o, k)} |"
    print(f"{row} {goal} |")
print()
print(f"rounds: {max((int(r['round']) for r in rows), default=0)}; medians over the rounds")
for r in failed:
    print(f"FAILED: round {r['round']} {r['server']} {r['failed']}")
bad = len(failed)
for r in rows:
    if "many_served" in r and r["many_served"] != r["many_clients"]:
        bad += 1
sys.exit(1 if bad else 0)
EOF
