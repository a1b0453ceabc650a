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
# per MiB, and the ratio core / bare; also the core with loss and reordering recovery off
# (what that feature costs on a clean link). The bare loop copies through a scratch buffer as
# large as the core's echo chunk (4 KiB), its strongest fair form. `log` is on but no logger is installed (as in firmware
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
for mode in bare core core-no-recovery; do
  round=${mode%%-*}_server_round
  "$bin" "$mode" "$mib" >/dev/null # a plain run first: fails fast on a broken echo
  valgrind --tool=callgrind --callgrind-out-file="$work/$mode.out" "$bin" "$mode" "$mib" \
    >"$work/$mode.log" 2>&1 || { cat "$work/$mode.log" >&2; exit 1; }
  callgrind_annotate --inclusive=yes "$work/$mode.out" >"$work/$mode.txt" 2>/dev/null
  total[$mode]=$(grep -m1 "PROGRAM TOTALS" "$work/$mode.txt" | awk '{gsub(",","",$1); print $1}')
  server[$mode]=$(grep -m1 "$round" "$work/$mode.txt" | awk '{gsub(",","",$1); print $1}')
  [ -n "${server[$mode]}" ] || { echo "no $round in the profile" >&2; exit 1; }
done

python3 - "$mib" "${server[bare]}" "${server[core]}" "${server[core-no-recovery]}" \
  "${total[bare]}" "${total[core]}" "${total[core-no-recovery]}" "$features" <<'EOF'
import sys
mib = int(sys.argv[1]); sb, sc, sn, tb, tc, tn = map(int, sys.argv[2:8])
print(f"features: {sys.argv[8] or '(default)'}; {mib} MiB echoed through one connection")
print("| instructions per echoed MiB | bare smoltcp loop | smolecho core | ratio | core, recovery off | ratio | goal |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
m = lambda v: f"{v/mib/1e6:.2f} M"
print(f"| server (poll + echo) | {m(sb)} | {m(sc)} | {sc/sb:.3f}x | {m(sn)} | {sn/sb:.3f}x | <= 1.00x |")
print(f"| whole process (server, client, link) | {m(tb)} | {m(tc)} | {tc/tb:.3f}x | {m(tn)} | {tn/tb:.3f}x | |")
EOF
