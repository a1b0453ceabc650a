#!/usr/bin/env bash
# Cargo runner: boot a firmware ELF in QEMU with the LAN9118 on QEMU's user network.
# The board (-M) comes from the `board=<name>` string in the image; the UART is the terminal
# (quit with Ctrl-A X). The host reaches the echo service at 127.0.0.1:$SMOLECHO_PORT (TCP and
# UDP, default 7007), bound to loopback only.
set -euo pipefail
elf="$1"
shift
machine=mps2-an386
for m in mps2-an385 mps2-an500; do
  if grep -aq "board=$m" "$elf"; then machine=$m; fi
done
port="${SMOLECHO_PORT:-7007}"
exec qemu-system-arm -M "$machine" -nographic \
  -semihosting-config enable=on,target=native \
  -nic "user,model=lan9118,hostfwd=tcp:127.0.0.1:$port-:7,hostfwd=udp:127.0.0.1:$port-:7" \
  -kernel "$elf" "$@"
