#!/usr/bin/env bash
# The published crate: `cargo publish --dry-run` (package, then build it as crates.io would),
# the file list against .ci/package-list.txt (no CI, benchmark or fuzzing files), and the
# shipped tests and examples still compile from the package alone.
#
# A branch that adds or removes a file under src/, examples/ or tests/ regenerates the list:
#     cargo package --list --allow-dirty 2>/dev/null > .ci/package-list.txt
set -euo pipefail
cd "$(dirname "$0")/.."

expected=.ci/package-list.txt
actual=$(mktemp /tmp/smolecho-package-list.XXXXXX)
trap 'rm -f "$actual"' EXIT

# A clean clone needs no --allow-dirty: a dirty tree here means an earlier part wrote into it.
cargo publish --dry-run

cargo package --list 2>/dev/null >"$actual"
if ! diff -u "$expected" "$actual"; then
  echo "error: the package's files differ from $expected (- expected, + packaged)." >&2
  echo "If the change is intended: cargo package --list --allow-dirty 2>/dev/null > $expected" >&2
  exit 1
fi
if grep -E '^(\.ci/|benches/|fuzz/|BENCHMARKS\.md|examples/qemu-mps2/)' "$actual"; then
  echo "error: CI, benchmark, fuzzing or firmware files in the package (above)" >&2
  exit 1
fi

# The package has no self dev-dependency (cargo strips path dependencies), so the `sim`
# feature the repository's tests get from it is given by hand, as the README tells. The
# target directory is shared, so only smolecho and smoltcp (without `log`) compile again.
version=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])')
unpacked=target/package/smolecho-$version
(cd "$unpacked" && CARGO_TARGET_DIR="$OLDPWD/target" \
  cargo test --no-run --all-targets --features sim --locked)
echo "package checks passed ($(wc -l <"$expected") files)"
