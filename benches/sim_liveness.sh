#!/usr/bin/env bash
# benches/sim_liveness.rs over every build-time smoltcp knob: the assembler's range count
# (SMOLTCP_ASSEMBLER_MAX_SEGMENT_COUNT, which overrides the dev-dependency's feature) and
# the congestion controller (smoltcp features; cubic needs smoltcp's `std` for its float
# maths). Each build gets its own target directory. Simulation only: no network, no root.
#
#   benches/sim_liveness.sh [SEEDS] [MIB]        # defaults 3 and 8
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-3}
mib=${2:-8}
target=${CARGO_TARGET_DIR:-target}/sim-liveness
for asm in 1 4 8 16 32; do
  for cc in none reno cubic; do
    case $cc in
      none) features=() ;;
      reno) features=(--features smoltcp/socket-tcp-reno) ;;
      cubic) features=(--features smoltcp/std,smoltcp/socket-tcp-cubic) ;;
    esac
    # Every controller at the host's assembler size (32), every assembler size without one.
    if [[ $cc != none && $asm != 32 ]]; then continue; fi
    SMOLTCP_ASSEMBLER_MAX_SEGMENT_COUNT=$asm SIM_LIVENESS_BUILD="asm=$asm,cc=$cc" \
      CARGO_TARGET_DIR="$target/asm$asm-$cc" \
      cargo bench --quiet --bench sim_liveness "${features[@]}" -- run "$seeds" "$mib"
  done
done
