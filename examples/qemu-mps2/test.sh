#!/usr/bin/env bash
# Host test of the firmware: build the images, boot each in QEMU inside a network namespace of
# its own, wait for the UART ready line, and drive the echo service from the host side.
#
# Network safety: QEMU and the clients run only inside a fresh network namespace (`unshare
# --net`, just `lo` up); QEMU's user networking forwards 127.0.0.1:7007 there. No tap device,
# no bridge, nothing in the machine's own namespace. QEMU is killed by its PID on every exit.
#
# In CI (CI=true) every problem, including a missing tool or privilege, fails the script.
# Outside CI, without the means to run (no root, no user namespaces), it skips loudly.
set -euo pipefail
cd "$(dirname "$0")"

PORT=7007
L2_PORT_A=7100   # QEMU sends the guest's frames here (l2_ipv6_test.py listens)
L2_PORT_B=7101   # and takes frames for the guest here
READY_LINE="echo ready on tcp/7 udp/7"
BOOT_WAIT=20     # seconds of wall time for the ready line (QEMU boots in milliseconds)
TESTS_WAIT=300   # seconds for one image's host test, all of it
OUT=target/images
mkdir -p "$OUT"

in_ci() { [ "${CI:-}" = "true" ]; }
skip() {
  echo "!!! SKIPPED: firmware host test NOT RUN: $*" >&2
  echo "!!! (set CI=true to make this a failure)" >&2
  in_ci && exit 1
  exit 0
}

# ---- tools ---------------------------------------------------------------------------------
if ! command -v qemu-system-arm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y --no-install-recommends qemu-system-arm >/dev/null ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends qemu-system-arm >/dev/null; }
  else
    skip "qemu-system-arm is missing and cannot be installed (not root or no apt-get)"
  fi
fi
rustup target add thumbv7em-none-eabihf thumbv7m-none-eabi >/dev/null 2>&1 ||
  { in_ci && { echo "error: rustup target add failed" >&2; exit 1; }; }
command -v python3 >/dev/null || skip "python3 is missing"

if [ "$(id -u)" = 0 ]; then
  NETNS=(unshare --net --fork --kill-child)
elif unshare --user --map-root-user --net true 2>/dev/null; then
  NETNS=(unshare --user --map-root-user --net --fork --kill-child)
else
  skip "cannot create a network namespace (not root, no unprivileged user namespaces)"
fi

# ---- build ---------------------------------------------------------------------------------
# name | cargo arguments | QEMU machine
VARIANTS=(
  "ipv4|--release|mps2-an386"
  "ipv6|--release --features ipv6|mps2-an386"
  "dhcp|--release --features dhcp|mps2-an386"
  "an385|--release --target thumbv7m-none-eabi --features mps2-an385|mps2-an385"
  "an500|--release --features mps2-an500|mps2-an500"
  "rxerr|--release --features fault-injection|mps2-an386"
)
for v in "${VARIANTS[@]}"; do
  IFS='|' read -r name args machine <<<"$v"
  echo "--- build $name: cargo build $args"
  # shellcheck disable=SC2086
  cargo build --quiet $args
  target=thumbv7em-none-eabihf
  [[ $args == *thumbv7m-none-eabi* ]] && target=thumbv7m-none-eabi
  cp "target/$target/release/smolecho-qemu-mps2" "$OUT/$name.elf"
done
./size.sh "$OUT"/{ipv4,ipv6,dhcp,an385,an500}.elf

# ---- run -----------------------------------------------------------------------------------
# One image in a fresh namespace. The inner script owns QEMU and kills it by PID on exit; the
# PID is also written to a file so that this outer level can kill it should the inner level
# die first.
run_image() {
  local name=$1 machine=$2 suite=$3
  local elf="$OUT/$name.elf" uart="$OUT/$name-$suite.uart.log" pidfile="$OUT/$name.qemu.pid"
  rm -f "$uart" "$pidfile"
  echo "--- run $name on $machine ($suite)"
  # full / smoke: QEMU's user network, the host's clients on 127.0.0.1:$PORT.
  # ipv6-l2: the frames themselves, as UDP datagrams on loopback, to l2_ipv6_test.py.
  local nic="user,model=lan9118,hostfwd=tcp:127.0.0.1:$PORT-:7,hostfwd=udp:127.0.0.1:$PORT-:7"
  local client="python3 ./host_test.py $PORT $suite"
  if [ "$suite" = ipv6-l2 ]; then
    nic="socket,model=lan9118,udp=127.0.0.1:$L2_PORT_A,localaddr=127.0.0.1:$L2_PORT_B"
    client="python3 ./l2_ipv6_test.py $L2_PORT_A $L2_PORT_B"
  fi
  local rc=0
  timeout --kill-after=5 "$TESTS_WAIT" "${NETNS[@]}" bash -c '
    set -euo pipefail
    elf=$1 machine=$2 nic=$3 client=$4 uart=$5 pidfile=$6 ready=$7 boot_wait=$8
    ip link set lo up
    qemu-system-arm -M "$machine" -display none -monitor none -serial "file:$uart" \
      -nic "$nic" -kernel "$elf" </dev/null &
    qpid=$!
    echo "$qpid" >"$pidfile"
    trap "kill $qpid 2>/dev/null || true; wait $qpid 2>/dev/null || true" EXIT
    start=$(date +%s%N)
    deadline=$(( $(date +%s) + boot_wait ))
    until grep -q "$ready" "$uart" 2>/dev/null; do
      kill -0 "$qpid" 2>/dev/null || { echo "QEMU exited before the ready line" >&2; exit 1; }
      [ "$(date +%s)" -lt "$deadline" ] || { echo "no ready line within ${boot_wait} s" >&2; exit 1; }
      sleep 0.05
    done
    echo "  ready line after $(( ($(date +%s%N) - start) / 1000000 )) ms of wall time"
    $client
    # The periodic counters come every 5 s: wait for one written after the clients finished.
    lines=$(grep -c "^stats " "$uart" || true)
    deadline=$(( $(date +%s) + 12 ))
    until [ "$(grep -c "^stats " "$uart" || true)" -gt "$lines" ]; do
      [ "$(date +%s)" -lt "$deadline" ] || { echo "no counters line on the UART" >&2; exit 1; }
      sleep 0.2
    done
  ' _ "$elf" "$machine" "$nic" "$client" "$uart" "$pidfile" "$READY_LINE" "$BOOT_WAIT" || rc=$?
  # Belt and braces: the inner trap has killed QEMU already unless the inner shell died.
  if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  echo "  UART:"; sed 's/^/  | /' "$uart" 2>/dev/null | tail -n 12
  if grep -qE "PANIC|HARDFAULT|FATAL" "$uart" 2>/dev/null; then
    echo "error: $name: the firmware reported a fault" >&2; rc=1
  fi
  if [ "$rc" = 0 ]; then check_counters "$name" "$uart" "$suite" || rc=1; fi
  [ "$rc" = 0 ] || { echo "error: $name failed (exit $rc)" >&2; return 1; }
  echo "  $name passed"
}

# The firmware's own counters must agree with what the host did.
check_counters() {
  local name=$1 uart=$2 suite=$3
  python3 - "$uart" "$suite" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
stats = [dict(re.findall(r"(\w+)=(\d+)", line.replace("udp in", "udp_in")))
         for line in text.splitlines() if line.startswith("stats ")]
last = {k: int(v) for k, v in stats[-1].items()}
full = sys.argv[2] == "full"
suite = sys.argv[2]
want_tcp = {"full": 12, "smoke": 1, "ipv6-l2": 0}[suite]  # full: seed x2, 4 at once, 5 held-SYN, stream
want_udp = 4 if suite == "ipv6-l2" else 3
assert last["accepted"] >= want_tcp, f"tcp accepted={last['accepted']} < {want_tcp}"
assert last["udp_in"] >= want_udp and last["out"] >= want_udp, f"udp counters {last}"
if full:
    assert last["bytes"] >= 2 * 1024 * 1024, f"tcp bytes={last['bytes']}"
    assert last["held_syns"] >= 1, "the held-SYN test left no held SYN in the counters"
hwm = re.findall(r"stack high-water (\d+) of (\d+)", text)
assert hwm, "no stack high-water line"
if "fault injection" in text:
    # The injected receiver error was seen, counted once and recovered from (the echoes
    # above went through after it).
    assert last["rx_reset"] == 1, f"rx_reset={last['rx_reset']} after one injected RX error"
    print("  injected receiver error: counted and recovered")
else:
    # QEMU's LAN9118 never corrupts a frame: any driver error here is a driver bug.
    errors = {k: last[k] for k in ("rx_err", "rx_reset", "tx_err", "tx_ovr")}
    assert not any(errors.values()), f"driver errors in a clean run: {errors}"
boot = re.search(r"boot to ready (\d+) ms", text)
print(f"  counters ok: accepted={last['accepted']} held_syns={last['held_syns']} "
      f"tcp bytes={last['bytes']} udp in={last['udp_in']}; stack high-water "
      f"{hwm[-1][0]} of {hwm[-1][1]} B; boot to ready {boot.group(1)} ms (QEMU SysTick)")
PY
}

failed=0
run_image ipv4 mps2-an386 full || failed=1
run_image dhcp mps2-an386 full || failed=1
run_image ipv6 mps2-an386 smoke || failed=1
run_image ipv6 mps2-an386 ipv6-l2 || failed=1
run_image an385 mps2-an385 smoke || failed=1
run_image an500 mps2-an500 smoke || failed=1
run_image rxerr mps2-an386 smoke || failed=1
[ "$failed" = 0 ] || { echo "FIRMWARE HOST TEST FAILED" >&2; exit 1; }
echo "firmware host test passed"
