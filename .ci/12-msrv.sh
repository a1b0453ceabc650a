#!/usr/bin/env bash
# The MSRV: Cargo.toml's rust-version is held by clippy's `incompatible_msrv` lint (warn by
# default; 10-core.sh runs clippy with -D warnings), which flags any std API stabilised after
# it. This part checks that nothing switches the lint off or overrides the MSRV it reads, and
# that this toolchain's clippy still fires it for an API newer than the MSRV.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add clippy >/dev/null 2>&1 || true

msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
if [ -z "$msrv" ]; then
  echo "error: Cargo.toml declares no rust-version" >&2
  exit 1
fi
# An allow anywhere (attribute, [lints] table, rustflags, a clippy command line) or a
# clippy.toml msrv would hide violations. fuzz/ and the firmware are checked too.
if git grep -n -e 'incompatible_msrv' -- '*.rs' '*.toml' '*.sh' .ci/run ':!.ci/12-msrv.sh'; then
  echo "error: incompatible_msrv is named above: it must stay active" >&2
  exit 1
fi
if git ls-files | grep -E '(^|/)\.?clippy\.toml$' | xargs -r grep -nE '^\s*(msrv|rust-version)\s*='; then
  echo "error: a clippy.toml overrides the MSRV (above); Cargo.toml's rust-version is the one" >&2
  exit 1
fi

# The probe: <[T]>::as_array is stable since 1.93 (pick a newer API if the MSRV passes it).
probe=$(mktemp -d /tmp/smolecho-msrv.XXXXXX)
trap 'rm -rf "$probe"' EXIT
mkdir "$probe/src"
printf '[package]\nname = "msrv-probe"\nversion = "0.0.0"\nedition = "2024"\nrust-version = "%s"\n' \
  "$msrv" >"$probe/Cargo.toml"
echo 'fn main() { let a: Option<&[u8; 1]> = [1u8].as_slice().as_array(); println!("{a:?}"); }' \
  >"$probe/src/main.rs"
lints=$(cd "$probe" && cargo clippy --quiet 2>&1)
if ! grep -q 'clippy::incompatible_msrv' <<<"$lints"; then
  echo "$lints" >&2
  echo "error: clippy did not flag an API newer than rust-version $msrv" >&2
  exit 1
fi
echo "msrv checks passed (rust-version $msrv, incompatible_msrv active)"
