#!/usr/bin/env bash
# Bulk echo of several `tap_server --offload` variants against the kernel baseline, all in the
# same run: each variant on a TAP of its own behind one server namespace, the rounds
# interleaved (the order rotates), every byte verified by the load generator. What
# BENCHMARKS.md's table of offload variants was measured with. Needs root.
#
#   sudo VARIANTS='--buffer-size 512K|--buffer-size 1M' benches/offload_variants.sh
#   sudo VARIANTS='|/path/to/other/tap_server' BENCH_ROUNDS=10 benches/offload_variants.sh
#
# VARIANTS: '|'-separated; each is extra tap_server options, optionally after another
# tap_server binary (a first word that is an executable path). An empty variant is the
# default server. BENCH_ROUNDS (5), BENCH_BYTES (268435456), BENCH_FAMILY (4 or 6),
# BENCH_NO_BUILD=1, CARGO_TARGET_DIR.
#
#   [cli: loadgen] 10.77.0.1 | veth | [srv: 10.77.0.2 kernel_echo.py :8000, ip_forward=1
#                                         tapN 192.168.(70+N).100 -> variant N at .1 ]
#
# Both namespaces are created here and deleted on exit; nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

rounds=${BENCH_ROUNDS:-5}
bytes=${BENCH_BYTES:-268435456}
family=${BENCH_FAMILY:-4}
IFS='|' read -ra variants <<<"${VARIANTS-}"
[ "${#variants[@]}" -gt 0 ] || variants=("")
if [ "${#variants[@]}" -gt 8 ]; then
  echo "offload_variants.sh: at most 8 variants" >&2
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "offload_variants.sh: needs root (network namespaces); run it with sudo" >&2
  exit 2
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  cargo build --release --example tap_server >&2
fi
default_bin=$CARGO_TARGET_DIR/release/examples/tap_server
loadgen=$(cargo bench --bench loadgen --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="loadgen" and m.get("executable"):
        print(m["executable"])')
[ -x "$default_bin" ] && [ -x "$loadgen" ] || { echo "offload_variants.sh: build failed" >&2; exit 1; }

tag=$$
cli=smolecho-variants-cli-$tag
srv=smolecho-variants-srv-$tag
work=$(mktemp -d /tmp/smolecho-variants.XXXXXX)
pids=()
cleanup() {
  set +e
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
ip -n "$cli" link add vc type veth peer name vs netns "$srv"
for ns in "$cli" "$srv"; do ip -n "$ns" link set lo up; done
ip -n "$cli" link set vc mtu 1500 up
ip -n "$srv" link set vs mtu 1500 up
ip -n "$cli" addr add 10.77.0.1/24 dev vc
ip -n "$srv" addr add 10.77.0.2/24 dev vs
ip -n "$cli" -6 addr add fdab::1/64 dev vc nodad
ip -n "$srv" -6 addr add fdab::2/64 dev vs nodad
ip netns exec "$srv" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$srv" sysctl -qw net.ipv6.conf.all.forwarding=1

wait_line() { # FILE PATTERN PID WHAT
  for _ in $(seq 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "offload_variants.sh: $4 did not start:" >&2
  cat "$1" >&2
  exit 1
}

names=(kernel)
declare -A addr server_pid label
if [ "$family" = 6 ]; then addr[kernel]=[fdab::2]; else addr[kernel]=10.77.0.2; fi
for i in "${!variants[@]}"; do
  n=$((i + 1))
  net=$((70 + n))
  read -ra words <<<"${variants[$i]}"
  bin=$default_bin
  if [ "${#words[@]}" -gt 0 ] && [[ ${words[0]} == */* ]] && [ -x "${words[0]}" ]; then
    bin=${words[0]}
    words=("${words[@]:1}")
  fi
  ip -n "$cli" route add 192.168.$net.0/24 via 10.77.0.2
  ip -n "$cli" -6 route add fdc$n::/64 via fdab::2
  ip netns exec "$srv" "$bin" --offload --tap tap$n --ip 192.168.$net.1/24 --ip fdc$n::1/64 \
    --host-ip 192.168.$net.100/24 --host-ip fdc$n::100/64 \
    --gateway 192.168.$net.100 --gateway fdc$n::100 "${words[@]}" >"$work/v$n.log" 2>&1 &
  server_pid[v$n]=$!
  pids+=($!)
  wait_line "$work/v$n.log" "listening on" "$!" "variant $n"
  names+=(v$n)
  label[v$n]=${variants[$i]:-(default)}
  if [ "$family" = 6 ]; then addr[v$n]=[fdc$n::1]; else addr[v$n]=192.168.$net.1; fi
done
ip netns exec "$srv" python3 "$root/benches/kernel_echo.py" 8000 65536 >"$work/kernel.log" 2>&1 &
server_pid[kernel]=$!
pids+=($!)
wait_line "$work/kernel.log" "listening" "$!" kernel_echo.py

# The servers' CPU time (all threads, including exited ones), ms.
cpu_ms() { awk '{printf "%.0f\n", ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"'}' /proc/"$1"/stat; }

for s in "${names[@]}"; do
  ip netns exec "$cli" "$loadgen" tcp-rtt "${addr[$s]}:8000" 10 >/dev/null
done
results=$work/results
: >"$results"
echo "== $rounds round(s), $((bytes >> 20)) MiB, IPv$family; load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$rounds"); do
  shift_by=$(((round - 1) % ${#names[@]}))
  order=("${names[@]:shift_by}" "${names[@]:0:shift_by}")
  for s in "${order[@]}"; do
    c0=$(cpu_ms "${server_pid[$s]}")
    if out=$(ip netns exec "$cli" timeout 300 "$loadgen" bulk "${addr[$s]}:8000" "$bytes" 2>"$work/err"); then
      c1=$(cpu_ms "${server_pid[$s]}")
      echo "round=$round server=$s $out cpu_ms=$((c1 - c0))" >>"$results"
      echo "   round $round $s: $out" >&2
    else
      echo "FAILED: round $round $s: $out $(cat "$work/err")" >&2
      echo "round=$round server=$s failed=1" >>"$results"
    fi
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

labels=$work/labels
: >"$labels"
for s in "${names[@]:1}"; do echo "$s ${label[$s]}" >>"$labels"; done
python3 - "$results" "$labels" <<'EOF'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(sys.argv[1]) if line.strip()]
labels = dict(line.rstrip("\n").split(" ", 1) for line in open(sys.argv[2]))
kernel = {r["round"]: float(r["bulk_mbit"]) for r in rows if r["server"] == "kernel" and "bulk_mbit" in r}
print("| server | median Mbit/s | median per-round ratio to the kernel | rounds >= 1.5x | server CPU per run (ms) | failed |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
failed_any = False
for name in ["kernel"] + list(labels):
    mine = [r for r in rows if r["server"] == name]
    ok = [r for r in mine if "bulk_mbit" in r]
    failed = len(mine) - len(ok)
    failed_any |= failed > 0
    mbit = [float(r["bulk_mbit"]) for r in ok]
    ratios = [float(r["bulk_mbit"]) / kernel[r["round"]] for r in ok if r["round"] in kernel]
    cpu = [int(r["cpu_ms"]) for r in ok]
    med = lambda v, f: f.format(statistics.median(v)) if v else "-"
    print(f"| {'kernel' if name == 'kernel' else labels[name]} | {med(mbit, '{:.0f}')} | "
          f"{med(ratios, '{:.2f}x')} | {sum(x >= 1.5 for x in ratios)} of {len(ratios)} | "
          f"{med(cpu, '{:.0f}')} | {failed} |")
sys.exit(1 if failed_any else 0)
EOF
