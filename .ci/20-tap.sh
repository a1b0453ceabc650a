#!/usr/bin/env bash
# The Linux TAP examples: build them in release, then run tests/tap_netns.rs,
# tests/tap_robustness.rs and tests/tap_impaired.rs, where every case creates its own network namespace (nothing on this
# machine's interfaces is touched). Needs root; runs with CI=true so that no case can skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "error: .ci/20-tap.sh needs root (network namespaces and TAP devices)" >&2
  exit 1
fi

# The kernel-side tools the cases drive the examples with.
need=()
command -v socat >/dev/null || need+=(socat)
nc -h 2>&1 | grep -qE '^[[:space:]]+-N[[:space:]]' || need+=(netcat-openbsd) # -N: half-close on EOF
command -v tshark >/dev/null || command -v tcpdump >/dev/null || need+=(tcpdump)
command -v ip >/dev/null && command -v ss >/dev/null || need+=(iproute2)
command -v python3 >/dev/null || need+=(python3)
command -v unshare >/dev/null && command -v setpriv >/dev/null || need+=(util-linux)
command -v stdbuf >/dev/null || need+=(coreutils)
command -v ethtool >/dev/null || need+=(ethtool) # checksum offload off on the impaired link's veth
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -c /dev/net/tun ]; then
  echo "error: /dev/net/tun is missing (TUN/TAP support)" >&2
  exit 1
fi

export CI=true
cargo build --release --examples
start=$SECONDS
cargo test --release --test tap_netns -- --ignored --nocapture --test-threads=2
echo "TAP namespace tests passed in $((SECONDS - start)) s"
# Robustness (issue 5): SYN flood, idle holders, a stuck reader, malformed frames, fixed
# memory. Raw frames are written by the test itself (AF_PACKET) onto the TAP of each case's
# own namespace. One case at a time, so the latency figures are not another case's load.
start=$SECONDS
cargo test --release --test tap_robustness -- --ignored --nocapture --test-threads=1
echo "TAP robustness tests passed in $((SECONDS - start)) s"
# Impaired links (issue 9): the kernel's TCP through a relay that loses, duplicates, corrupts
# and reorders frames; no stall over a bound, no client reset. The relay runs inside each
# case (tests/netns/impair.rs).
start=$SECONDS
cargo test --release --test tap_impaired -- --ignored --nocapture --test-threads=1
echo "TAP impaired-link tests passed in $((SECONDS - start)) s"
