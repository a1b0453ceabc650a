#!/usr/bin/env bash
# The core: formatting, lints, docs, the test suite (README's test command), embedded builds.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi >/dev/null

cargo fmt --check
cargo clippy --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

# The README's test command.
cargo test

# The seeded fault simulation at full size (the default run above does 200 seeds).
SMOLECHO_SEEDS=5000 cargo test --release --test sim_faults -- --nocapture

# Liveness over a reordering link at full size (20 MB) and 10 seeds (the debug run above:
# 8 MB, 2 seeds), then with the firmware's smoltcp assembler size, which must not buy a
# stall either.
SMOLECHO_SEEDS=10 cargo test --release --test sim_liveness -- --nocapture
fw_assembler=$(grep -o 'assembler-max-segment-count-[0-9]*' examples/qemu-mps2/Cargo.toml | grep -o '[0-9]*$')
SMOLTCP_ASSEMBLER_MAX_SEGMENT_COUNT=$fw_assembler SMOLECHO_SEEDS=10 \
  cargo test --release --test sim_liveness firmware -- --nocapture

# The embedded builds: no std, no alloc anywhere in the tree.
for target in thumbv7em-none-eabihf thumbv6m-none-eabi; do
  cargo build --lib --no-default-features --target "$target"
  cargo build --lib --target "$target"
  if cargo tree -e features,normal --no-default-features --target "$target" \
      | grep -E 'feature "(std|alloc)"'; then
    echo "error: std or alloc enabled in the embedded dependency tree for $target" >&2
    exit 1
  fi
done
# The optional features build and lint on the embedded target too (log and defmt exclude
# each other, as in smoltcp).
for features in log defmt medium-ip; do
  cargo clippy --lib --features "$features" --target thumbv7em-none-eabihf -- -D warnings
done
echo "core checks passed"
