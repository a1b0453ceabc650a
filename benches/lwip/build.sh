#!/usr/bin/env bash
# Builds the lwIP echo peer: benches/lwip/build.sh OUTDIR  ->  OUTDIR/lwip_echo
# Needs Debian's liblwip-dev (lwIP 2.1.3); installs it with apt when run as root and it is
# missing. README.md beside this script describes the peer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1

if ! dpkg-query -W -f='${Status}' liblwip-dev 2>/dev/null | grep -q 'install ok installed'; then
  if [ "$(id -u)" != 0 ]; then
    echo "$0: liblwip-dev is missing; install it as root: apt-get install -y liblwip-dev" >&2
    exit 1
  fi
  echo "$0: installing liblwip-dev" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y liblwip-dev >&2 || { apt-get update >&2 && apt-get install -y liblwip-dev >&2; }
fi
command -v gcc >/dev/null || { echo "$0: gcc is missing" >&2; exit 1; }

# lwip.pc gives -I/usr/include/lwip -llwip; fall back to the same if pkg-config is absent.
if command -v pkg-config >/dev/null && pkg-config --exists lwip; then
  lwip_cflags=$(pkg-config --cflags lwip)
  lwip_libs=$(pkg-config --libs lwip)
else
  lwip_cflags=-I/usr/include/lwip
  lwip_libs=-llwip
fi

mkdir -p "$out"
# shellcheck disable=SC2086 # the pkg-config words are meant to split
gcc -O2 -Wall -Wextra -Werror $lwip_cflags -o "$out/lwip_echo" "$here/lwip_echo.c" $lwip_libs -lpthread
echo "$out/lwip_echo"
