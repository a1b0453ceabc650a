#!/usr/bin/env bash
# The benchmark suite in smoke mode, so it cannot rot: builds the bench tools, runs
# benches/run.sh and benches/impaired.sh with BENCH_QUICK=1 (one round, small sizes, under
# 90 s each) and the simulated-link echo once natively. The impaired-link smoke fails only on
# wrong bytes or a broken test bed: its stalls and resets are figures (tests/tap_impaired.rs
# asserts them). Fails if any measurement fails: a byte mismatch, a lost connection, or
# not every one of the 256 clients served. The figures it prints are not checked (they are
# benchmark figures, see BENCHMARKS.md). Needs root for the network namespaces; without root
# it only builds and runs the simulated-link part.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

start=$SECONDS
cargo build --release --example tap_server
cargo bench --no-run --bench loadgen --bench sim_echo --bench impair_relay

# The simulated-link echo, byte-verified, core and bare, every feature on.
features="proto-ipv4 proto-ipv6 medium-ethernet medium-ip log sim"
sim=$(cargo bench --bench sim_echo --no-run --features "$features" --message-format=json \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="sim_echo" and m.get("executable"):
        print(m["executable"])')
"$sim" core 4
"$sim" core-no-recovery 4
"$sim" bare 4

probe=smolecho-bench-probe-$$
if [ "$(id -u)" != 0 ] || ! ip netns add "$probe" 2>/dev/null; then
  echo "bench smoke: not root (or no network namespaces here): skipped the network part"
  exit 0
fi
ip netns del "$probe"
BENCH_QUICK=1 BENCH_NO_BUILD=1 bash benches/run.sh
BENCH_QUICK=1 BENCH_NO_BUILD=1 bash benches/impaired.sh
echo "bench smoke passed in $((SECONDS - start)) s"
