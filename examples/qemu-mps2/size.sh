#!/usr/bin/env bash
# Flash and RAM of firmware images, from the ELF section headers (`readelf -SW`):
#   flash = .vector_table + .text + .rodata + .data (the load image of .data)
#   static RAM = .data + .bss + .uninit
# The stack is what remains of the 32 KiB RAM region (memory.x); the firmware prints how much
# of it was ever used ("stack high-water"), which the host test checks and shows.
#
# The README's size table comes from, in this directory:
#   ./test.sh                                          # builds every image into target/images/
#   ./size.sh target/images/{ipv4,ipv6,dhcp}.elf       # and runs them (stack high-water lines)
# A single build: ./size.sh target/thumbv7em-none-eabihf/release/smolecho-qemu-mps2
set -euo pipefail
for elf in "$@"; do
  echo "== $(basename "$elf" .elf)"
  readelf -SW "$elf"
done | python3 -c '
import re, sys
RAM_REGION = 32 * 1024
rows, name, s = [], None, {}
def flush():
    if name:
        flash = sum(s.get(k, 0) for k in (".vector_table", ".text", ".rodata", ".data"))
        ram = sum(s.get(k, 0) for k in (".data", ".bss", ".uninit"))
        rows.append((name, flash, ram))
for line in sys.stdin:
    if line.startswith("== "):
        flush(); name, s = line[3:].strip(), {}
        continue
    m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", line)
    if m:
        s[m.group(1)] = int(m.group(2), 16)
flush()
print("%-8s %8s %9s %12s %6s %12s" % ("image", "flash B", "flash KiB", "static RAM B", "KiB", "stack room B"))
for n, f, r in rows:
    print(f"{n:<8} {f:>8} {f/1024:>9.1f} {r:>12} {r/1024:>6.1f} {RAM_REGION - r:>12}")
'
