#!/usr/bin/env bash
# Instructions per echoed MiB: the core's echo (EchoNode) against a bare smoltcp echo loop,
# on the same simulated link, under valgrind's callgrind (deterministic counts). No root, no
# kernel networking. See benches/sim_echo.rs and BENCHMARKS.md.
#
#   benches/callgrind.sh            # 16 MiB through each, every feature on
#   BENCH_MIB=4 benches/callgrind.sh
#   BENCH_FEATURES="" benches/callgrind.sh   # default features only
#
# Prints, for each, the server's instructions (inclusive cost of core_server_round /
# bare_server_round: everything the server does, smoltcp included) and the whole process's,
# per MiB, and the ratio core / bare. `log` is on but no logger is installed (as in firmware
# that does not log); `defmt` cannot be on together with `log` (smoltcp refuses both).
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${BENCH_MIB:-16}
features=${BENCH_FEATURES-proto-ipv4 proto-ipv6 medium-ethernet medium-ip log sim}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
command -v valgrind >/dev/null || { echo "benches/callgrind.sh: valgrind is missing" >&2; exit 2; }

bin=$(cargo bench --bench sim_echo --no-run --features "$features" --message-format=json \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="sim_echo" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "benches/callgrind.sh: build failed" >&2; exit 1; }
work=$(mktemp -d /tmp/smolecho-callgrind.XXXXXX)
trap 'rm -rf "$work"' EXIT

declare -A server total
for mode in bare core; do
  "$bin" "$mode" "$mib" >/dev/null # a plain run first: fails fast on a broken echo
  valgrind --tool=callgrind --callgrind-out-file="$work/$mode.out" "$bin" "$mode" "$mib" \
    >"$work/$mode.log" 2>&1 || { cat "$work/$mode.log" >&2; exit 1; }
  callgrind_annotate --inclusive=yes "$work/$mode.out" >"$work/$mode.txt" 2>/dev/null
  total[$mode]=$(grep -m1 "PROGRAM TOTALS" "$work/$mode.txt" | awk '{gsub(",","",$1); print $1}')
  server[$mode]=$(grep -m1 "${mode}_server_round" "$work/$mode.txt" | awk '{gsub(",","",$1); print $1}')
  [ -n "${server[$mode]}" ] || { echo "no ${mode}_server_round in the profile" >&2; exit 1; }
done

python3 - "$mib" "${server[bare]}" "${server[core]}" "${total[bare]}" "${total[core]}" "$features" <<'EOF'
import sys
mib = int(sys.argv[1]); sb, sc, tb, tc = map(int, sys.argv[2:6])
print(f"features: {sys.argv[6] or '(default)'}; {mib} MiB echoed through one connection")
print("| instructions per echoed MiB | bare smoltcp loop | smolecho core | ratio | goal |")
print("| --- | ---: | ---: | ---: | --- |")
print(f"| server (poll + echo) | {sb/mib/1e6:.2f} M | {sc/mib/1e6:.2f} M | {sc/sb:.3f}x | <= 1.05x |")
print(f"| whole process (server, client, link) | {tb/mib/1e6:.2f} M | {tc/mib/1e6:.2f} M | {tc/tb:.3f}x | |")
EOF
