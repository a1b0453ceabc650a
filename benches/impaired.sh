#!/usr/bin/env bash
# The impaired-link benchmark (issue 9): tap_server, the kernel-to-kernel baseline and an lwIP
# echo, each behind the same user-space impairing relay (benches/impair_relay.rs; this kernel
# has no sch_netem), with the same seeded impairments, in one run. Prints throughput and the
# longest stall (the longest gap between received bytes) per peer and link, the 32 clients
# on 8 slots result on the mix link, and tap_server's ratios to lwIP and to the kernel.
# Needs root (network namespaces). BENCHMARKS.md describes it and holds the figures.
#
#   sudo benches/impaired.sh                  # BENCH_RUNS=3 runs of every link
#   sudo BENCH_RUNS=10 benches/impaired.sh    # the issue's done criteria: 10 runs
#   sudo BENCH_QUICK=1 benches/impaired.sh    # smoke: 1 run, small sizes, < 90 s
#   sudo BENCH_SERVER_BIN=/path/to/tap_server benches/impaired.sh   # another tap_server build
#
# Environment: BENCH_RUNS (3), BENCH_QUICK (0), BENCH_LINKS (a subset of: reorder loss2 mix),
# BENCH_PEERS (a subset of: kernel lwip tap_server), BENCH_TIMEOUT (seconds one bulk transfer
# may take, 120; 15 in quick mode; a transfer that overruns counts as a stall of at least its
# silence so far), BENCH_SEED (1: run r uses seed BENCH_SEED+r, the same for every peer),
# BENCH_SERVER_BIN, BENCH_SERVER_ARGS (extra tap_server options), BENCH_NO_BUILD=1,
# BENCH_LWIP_SRC (the lwIP peer's directory, benches/lwip: its build.sh OUTDIR makes
# OUTDIR/lwip_echo; without it the lwIP column says n/a),
# BENCH_LOG_DIR (keep every log: relay counters, server output), BENCH_PCAP_DIR (tap_server
# records each measurement there, RUN-LINK-tap_server-KIND.pcap), CARGO_TARGET_DIR.
#
# Links, both directions (the relay's profiles, tests/netns/impair.rs):
#   reorder  0.2-0.6 ms uniform random delay per frame (reorders), no loss; 20 MB bulk
#   loss2    2 % loss; 5 MB bulk
#   mix      2 % loss, 1 % duplicates, 0.5 % corrupted, 0.2-0.6 ms delay; 5 MB bulk, then
#            32 clients at once on tap_server's 8 slots, 4 KiB (1 KiB quick) echoed and
#            verified each, each connection held 300 ms after its echo
#
# Topology: three namespaces made for this run and deleted on exit, whatever happens:
#
#   [cli: loadgen, kernel TCP; vc 10.77.9.1/24, checksum offload and TSO/GSO off]
#        | veth
#   [relay: no addresses, IPv6 off; impair_relay bridges vr and ONE of:
#        tapS  -- tap_server  10.77.9.2 :8000 (--slots 8), started fresh for each measurement
#        tapL  -- lwip_echo   10.77.9.4 :8000, started fresh for each measurement
#        vk    -- veth -- [ksrv: ks 10.77.9.3/24, offload off; kernel_echo.py, recv 64 KiB] ]
#
# The host's own interfaces, addresses and routes are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
me=benches/impaired.sh

quick=${BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
  runs=${BENCH_RUNS:-1}; timeout_s=${BENCH_TIMEOUT:-15}
  declare -A bulk_bytes=([reorder]=$((4 << 20)) [loss2]=$((512 << 10)) [mix]=$((512 << 10)))
  client_bytes=1024; clients_timeout=30
else
  runs=${BENCH_RUNS:-3}; timeout_s=${BENCH_TIMEOUT:-120}
  declare -A bulk_bytes=([reorder]=20000000 [loss2]=5000000 [mix]=5000000)
  client_bytes=4096; clients_timeout=60
fi
links=${BENCH_LINKS:-reorder loss2 mix}
peers=${BENCH_PEERS:-kernel lwip tap_server}
clients=32
# Each client keeps its connection this long after its echo, as a real client does (and as
# tests/tap_impaired.rs): the slots stay busy while further SYNs wait, which is when the
# SYN-flood defence judges half-open slots. Without it the crowd is through before any
# retransmission timer fires, and resets are rare.
client_hold_ms=300
port=8000

if [ "$(id -u)" != 0 ]; then
  echo "$me: needs root (network namespaces, TAP devices); run it with sudo" >&2
  exit 2
fi
for tool in ip python3 cargo timeout; do
  command -v "$tool" >/dev/null || { echo "$me: $tool is missing" >&2; exit 2; }
done
if ! command -v ethtool >/dev/null; then
  echo "installing ethtool (checksum offload off on the veths)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ethtool >/dev/null
fi

# --- build -------------------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  echo "== building (release)" >&2
  cargo build --release --example tap_server >&2
fi
bench_exe() { # NAME: the path of a bench target's executable (builds it when needed)
  cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]==sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
server_bin=${BENCH_SERVER_BIN:-$CARGO_TARGET_DIR/release/examples/tap_server}
loadgen=$(bench_exe loadgen)
relay_bin=$(bench_exe impair_relay)
for b in "$server_bin" "$loadgen" "$relay_bin"; do
  [ -x "$b" ] || { echo "$me: build failed ($b is missing)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/smolecho-impaired.XXXXXX)
# The lwIP peer (benches/lwip, built by its own script): optional, its column says why not.
lwip_src=${BENCH_LWIP_SRC:-benches/lwip}
lwip_bin="" lwip_na=""
if [[ " $peers " == *" lwip "* ]]; then
  if [ ! -f "$lwip_src/build.sh" ]; then
    lwip_na="n/a ($lwip_src missing)"
  elif ! bash "$lwip_src/build.sh" "$CARGO_TARGET_DIR/lwip" >"$work/lwip-build.log" 2>&1 \
      || [ ! -x "$CARGO_TARGET_DIR/lwip/lwip_echo" ]; then
    lwip_na="n/a ($lwip_src/build.sh failed)"
    echo "$me: WARNING: the lwIP peer did not build:" >&2
    tail -20 "$work/lwip-build.log" >&2
  else
    lwip_bin=$CARGO_TARGET_DIR/lwip/lwip_echo
  fi
fi

# --- namespaces --------------------------------------------------------------------------
tag=$$
cli=smolecho-imp-cli-$tag
rel=smolecho-imp-relay-$tag
ksrv=smolecho-imp-ksrv-$tag
pids=()
cleanup() {
  set +e
  local ns_pids
  ns_pids=$(for n in "$cli" "$rel" "$ksrv"; do ip netns pids "$n" 2>/dev/null; done)
  for pid in "${pids[@]}" $ns_pids; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}" $ns_pids; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
  done
  for n in "$cli" "$rel" "$ksrv"; do ip netns del "$n" 2>/dev/null; done
  if [ -n "${BENCH_LOG_DIR:-}" ]; then
    mkdir -p "$BENCH_LOG_DIR" && cp -r "$work"/. "$BENCH_LOG_DIR"/
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for n in "$cli" "$rel" "$ksrv"; do
  ip netns add "$n"
  ip -n "$n" link set lo up
  # IPv4 only: no IPv6 link-local chatter, and in the relay namespace no address at all.
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
in_cli() { ip netns exec "$cli" "$@"; }
# Both veth pairs are created with their ends directly in the namespaces: never in the host's.
ip -n "$cli" link add vc type veth peer name vr netns "$rel"
ip -n "$ksrv" link add ks type veth peer name vk netns "$rel"
ip -n "$rel" tuntap add dev tapS mode tap
ip -n "$rel" tuntap add dev tapL mode tap
for d in vr vk tapS tapL; do ip -n "$rel" link set "$d" mtu 1500 up; done
ip -n "$cli" link set vc mtu 1500 up
ip -n "$ksrv" link set ks mtu 1500 up
ip -n "$cli" addr add 10.77.9.1/24 dev vc
ip -n "$ksrv" addr add 10.77.9.3/24 dev ks
# The kernel senders fill in their checksums and cut their own segments: the relay reads
# frames off a veth, where checksum offload leaves partial checksums (the relay would complete
# them, counted as csum_fixed) and TSO/GSO leaves 64 KiB frames no TAP can take.
in_cli ethtool -K vc tx off tso off gso off gro off >/dev/null
ip netns exec "$ksrv" ethtool -K ks tx off tso off gso off gro off >/dev/null

declare -A addr=([kernel]=10.77.9.3 [lwip]=10.77.9.4 [tap_server]=10.77.9.2)
declare -A dev=([kernel]=vk [lwip]=tapL [tap_server]=tapS)

wait_line() { # FILE PATTERN PID WHAT
  for _ in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "$me: $4 did not start:" >&2
  cat "$1" >&2
  return 1
}
stop_pid() { # PID: SIGTERM, then wait at most 5 s
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

ip netns exec "$ksrv" python3 "$root/benches/kernel_echo.py" "$port" 65536 \
  >"$work/kernel.log" 2>&1 &
pids+=($!)
wait_line "$work/kernel.log" listening "$!" kernel_echo.py

# The servers are not under timeout(1) either: the cleanup on exit ends whatever runs in
# this run's namespaces. `ip netns exec` execs in place (a shell function would not), so $!
# is the server itself.
peer_pid=""
start_peer() { # PEER LOGFILE: the user-space servers start fresh for every measurement
  case $1 in
    tap_server)
      # shellcheck disable=SC2086 # BENCH_SERVER_ARGS is a list of options
      local pcap=()
      [ -n "${BENCH_PCAP_DIR:-}" ] && pcap=(--pcap "$BENCH_PCAP_DIR/$(basename "$2" .server).pcap")
      ip netns exec "$rel" "$server_bin" --tap tapS --ip 10.77.9.2/24 --port "$port" --slots 8 \
        "${pcap[@]}" ${BENCH_SERVER_ARGS:-} >"$2" 2>&1 &
      peer_pid=$!
      wait_line "$2" "listening on" "$peer_pid" tap_server ;;
    lwip)
      ip netns exec "$rel" "$lwip_bin" --tap tapL --ip 10.77.9.4 --prefix 24 --gw 10.77.9.1 \
        --port "$port" >"$2" 2>&1 &
      peer_pid=$!
      wait_line "$2" ready "$peer_pid" lwip_echo ;;
    *) peer_pid="" ;;
  esac
}

results=$work/results
: >"$results"
failures=0
load() { cut -d' ' -f1 /proc/loadavg; }

measure() { # RUN LINK PEER SEED KIND (bulk or clients)
  local run=$1 link=$2 peer=$3 seed=$4 kind=$5 log=$work/$1-$2-$3-$5 out relay_pid
  local line="run=$run link=$link peer=$peer kind=$kind seed=$seed"
  if [ "$peer" = lwip ] && [ -n "$lwip_na" ]; then
    echo "$line na=1" >>"$results"
    return 0
  fi
  if ! start_peer "$peer" "$log.server"; then
    failures=$((failures + 1))
    echo "$line broken=start" >>"$results"
    return 0
  fi
  # Not under timeout(1), which can exit before its child has printed: --max-secs bounds it.
  ip netns exec "$rel" "$relay_bin" vr "${dev[$peer]}" --profile "$link" --seed "$seed" \
    --max-secs $((timeout_s + clients_timeout + 60)) >"$log.relay" 2>&1 &
  relay_pid=$!
  if ! wait_line "$log.relay" ready "$relay_pid" impair_relay; then
    failures=$((failures + 1))
    echo "$line broken=relay" >>"$results"
    [ -n "$peer_pid" ] && stop_pid "$peer_pid"
    return 0
  fi
  line+=" load=$(load)"
  if [ "$kind" = bulk ]; then
    out=$(in_cli timeout $((timeout_s + 10)) "$loadgen" bulk "${addr[$peer]}:$port" \
      "${bulk_bytes[$link]}" "$timeout_s" 2>"$log.err") || true
    line+=" ${out:-bulk_failed=killed}"
    if [[ $out == *bulk_failed=mismatch* || $out == *bulk_failed=extra* ]]; then
      failures=$((failures + 1))
      echo "FAILED (wrong bytes): $peer on $link: $(cat "$log.err")" >&2
    fi
  else
    out=$(in_cli timeout $((clients_timeout + 15)) "$loadgen" clients "${addr[$peer]}:$port" \
      "$clients" "$client_bytes" "$client_hold_ms" "$clients_timeout" 2>"$log.err") || true
    line+=" ${out:-clients_served=0 clients_reset=0 clients_refused=0 clients_failed=$clients}"
    if grep -q "echo differs\|bytes after" "$log.err" 2>/dev/null; then
      failures=$((failures + 1))
      echo "FAILED (wrong bytes): $peer clients on $link: $(cat "$log.err")" >&2
    fi
  fi
  # Let closing handshakes cross the link before it goes away.
  sleep 0.5
  stop_pid "$relay_pid"
  if [ -n "$peer_pid" ]; then
    # A server that died mid-measurement is a crash, not a stall: say so.
    if ! kill -0 "$peer_pid" 2>/dev/null; then
      line+=" peer_died=1"
      echo "$me: $peer DIED during $link $kind:" >&2
      tail -5 "$log.server" >&2
      [ "$peer" = tap_server ] && failures=$((failures + 1))
    fi
    stop_pid "$peer_pid"
  fi
  local counters
  counters=$( (grep '^relay ' "$log.relay" || true) | awk '{
      for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = v[kv[1]] (v[kv[1]] == "" ? "" : "/") kv[2] }
    } END { printf "relay_passed=%s relay_dropped=%s relay_dup=%s relay_corrupt=%s relay_fixed=%s relay_oversize=%s relay_kdrops=%s relay_late_max_us=%s relay_late_1ms=%s",
      v["passed"], v["dropped"], v["duplicated"], v["corrupted"], v["csum_fixed"], v["oversize"], v["kernel_drops"], v["late_max_us"], v["late_over_1ms"] }')
  line+=" $counters"
  echo "   $line" | sed 's/run=[0-9]* //' >&2
  echo "$line" >>"$results"
}

echo "== impaired links: $runs run(s) of: $links; peers: $peers; $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "== tap_server: $server_bin ${BENCH_SERVER_ARGS:-}" >&2
[ -n "$lwip_na" ] && echo "== lwIP: $lwip_na" >&2
base_seed=${BENCH_SEED:-1}
for run in $(seq "$runs"); do
  read -ra order <<<"$peers"
  # Alternate the order of the peers, so a drift in machine load falls on each in turn.
  if [ $((run % 2)) = 0 ]; then
    for ((i = 0, j = ${#order[@]} - 1; i < j; i++, j--)); do
      t=${order[i]}; order[i]=${order[j]}; order[j]=$t
    done
  fi
  for link in $links; do
    echo "-- run $run, $link (${order[*]})" >&2
    for peer in "${order[@]}"; do measure "$run" "$link" "$peer" $((base_seed + run)) bulk; done
    # The crowd on its own server and relay, after the bulk transfers (mix link only).
    if [ "$link" = mix ]; then
      for peer in "${order[@]}"; do
        measure "$run" "$link" "$peer" $((base_seed + run)) clients
      done
    fi
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# --- table ---------------------------------------------------------------------------------
python3 - "$results" "$timeout_s" "$clients" "$lwip_na" <<'EOF'
import statistics, sys
path, timeout_s, clients, lwip_na = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = [dict(kv.split("=", 1) for kv in l.split()) for l in open(path) if l.strip()]
peers = ["kernel", "lwip", "tap_server"]
names = {"kernel": "kernel to kernel", "lwip": "lwIP raw-API echo", "tap_server": "tap_server"}
links = [("reorder", "reordering only: 0.2-0.6 ms random delay, no loss"),
         ("loss2", "2 % loss"),
         ("mix", "2 % loss, 1 % dup, 0.5 % corrupt, reordering")]
def sel(link, peer, kind="bulk"):
    return [r for r in rows if r["link"] == link and r["peer"] == peer and r["kind"] == kind
            and "na" not in r]
def mb(r):
    return int(r.get("bytes", 0)) / 1e6
def fmt(x):
    return "-" if x is None else (f"{x:.0f}" if x >= 100 else f"{x:.3g}")
def thr(rs):
    """median (min-max) Mbit/s of the finished transfers; how many did not finish"""
    v = sorted(float(r["bulk_mbit"]) for r in rs if "bulk_mbit" in r)
    bad = sum(1 for r in rs if "bulk_mbit" not in r)
    if not v:
        return None, ("-" if not rs else f"none finished ({bad} of {len(rs)} failed)")
    med = statistics.median(v)
    s = fmt(med) if len(v) == 1 else f"{fmt(med)} ({fmt(v[0])}-{fmt(v[-1])})"
    if bad:
        s += f", **{bad} of {len(rs)} did not finish**"
    return med, s
def stall(rs):
    v = [float(r["longest_stall_ms"]) / 1e3 for r in rs if "longest_stall_ms" in r]
    if not v:
        return "-"
    big = sum(1 for x in v if x >= 2.0)
    return f"{max(v):.2f} s worst; {big} of {len(v)} runs >= 2 s" if big else f"{max(v):.2f} s worst"
def many(rs):
    v = [r for r in rs if "clients_served" in r]
    if not v:
        return "-"
    served = min(int(r["clients_served"]) for r in v)
    reset = max(int(r["clients_reset"]) for r in v)
    resets = sum(1 for r in v if int(r["clients_reset"]) > 0)
    other = max(int(r["clients_failed"]) + int(r["clients_refused"]) for r in v)
    s = f"{served}/{clients} served, {reset} reset (worst run)"
    if other:
        s += f", {other} failed"
    if len(v) > 1:
        s += f"; {resets} of {len(v)} runs with a reset"
    return s
def cell(link, peer, what, kind="bulk"):
    if peer == "lwip" and lwip_na and not sel(link, peer, kind):
        return lwip_na
    rs = sel(link, peer, kind)
    died = sum(1 for r in rs if "peer_died" in r)
    return what(rs) + (f" (**crashed in {died} of {len(rs)}**)" if died else "")
def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.3g}x"
print()
print("| link (both directions) | figure | " + " | ".join(names[p] for p in peers)
      + " | tap_server / lwIP | tap_server / kernel |")
print("| --- | --- |" + " ---: |" * len(peers) + " ---: | ---: |")
for link, desc in links:
    if not any(r["link"] == link for r in rows):
        continue
    size = max((mb(r) for r in rows if r["link"] == link and r["kind"] == "bulk"), default=0)
    meds = {p: thr(sel(link, p))[0] for p in peers}
    cells = [cell(link, p, lambda rs: thr(rs)[1]) for p in peers]
    print(f"| {desc} ({size:.3g} MB) | throughput, Mbit/s, median (min-max) | " + " | ".join(cells)
          + f" | {ratio(meds['tap_server'], meds['lwip'])} | {ratio(meds['tap_server'], meds['kernel'])} |")
    print(f"| | longest stall | " + " | ".join(cell(link, p, stall) for p in peers) + " | | |")
    if link == "mix":
        print(f"| | {clients} clients at once (tap_server: 8 slots) | "
              + " | ".join(cell(link, p, many, "clients") for p in peers) + " | | |")
runs = max((int(r["run"]) for r in rows), default=0)
print()
print(f"runs: {runs}; per-transfer timeout {timeout_s:g} s (a transfer that overran is a stall "
      "of at least its silence so far); load average (1 min) per measurement: "
      + ", ".join(sorted({r['load'] for r in rows if 'load' in r}, key=float)[:1]
                  + sorted({r['load'] for r in rows if 'load' in r}, key=float)[-1:]) + " (min, max)")
over = [r for r in rows if r.get("relay_oversize", "0/0") not in ("0/0", "")]
kd = [r for r in rows if r.get("relay_kdrops", "0/0") not in ("0/0", "")]
if over:
    print(f"WARNING: {len(over)} measurements saw oversize (GSO) frames at the relay")
late = [max(int(x) for x in r["relay_late_max_us"].split("/")) for r in rows
        if r.get("relay_late_max_us", "").replace("/", "").isdigit()]
def total(key):
    return sum(int(x) for r in rows for x in r.get(key, "").split("/") if x.isdigit())
if late:
    late.sort()
    print(f"relay timing: of {total('relay_passed')} frames passed, {total('relay_late_1ms')} left "
          f"more than 1 ms after their due time; the latest {late[-1] / 1e3:.2f} ms (median over "
          f"measurements of each one's latest: {late[len(late) // 2] / 1e3:.2f} ms)")
if kd:
    print(f"note: the relay's sockets overflowed in {len(kd)} measurements (extra loss): "
          + ", ".join(f"{r['link']}/{r['peer']} {r['relay_kdrops']}" for r in kd[:5]))
EOF
if [ "$failures" -gt 0 ]; then
  echo "$me: $failures measurement(s) FAILED (wrong bytes or a peer that did not start)" >&2
  exit 1
fi
