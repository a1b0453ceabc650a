#!/usr/bin/env bash
# The firmware (examples/qemu-mps2): formatting, lints for every board and feature, then the
# host test, which builds the images, prints their sizes, boots each in QEMU inside a network
# namespace of its own and drives the echo service from the host (see its header).
set -euo pipefail
cd "$(dirname "$0")/../examples/qemu-mps2"

rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add thumbv7em-none-eabihf thumbv7m-none-eabi >/dev/null

cargo fmt --check
cargo clippy --release -- -D warnings
cargo clippy --release --features ipv6,dhcp -- -D warnings
cargo clippy --release --features panic-fmt -- -D warnings
cargo clippy --release --target thumbv7m-none-eabi --features mps2-an385 -- -D warnings

./test.sh
