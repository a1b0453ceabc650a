#!/usr/bin/env python3
"""Checks an echo server from the kernel side and prints figures; used by benches/lwip/smoke.sh.

  echo_check.py HOST PORT seed                 one short message, answered exactly
  echo_check.py HOST PORT bulk BYTES           one client streams BYTES, echo byte-verified
  echo_check.py HOST PORT many CLIENTS BYTES   CLIENTS at once, BYTES each, all byte-verified
  echo_check.py HOST PORT reset                a client resets mid-stream; the server still echoes
  echo_check.py HOST PORT garbage IFACE MAC N  N malformed frames sent raw on IFACE to MAC (root),
                                               then the server must still echo

Every socket has a timeout, so a stalled server fails the check instead of hanging it.
Exit status 0 only if every byte came back in order and every connection ended cleanly.
"""
import os
import socket
import struct
import sys
import threading
import time

TIMEOUT = 20.0  # seconds without progress on one socket before the check fails
CHUNK = 65536


def connect(host, port):
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def stream(host, port, payload):
    """Sends payload while reading the echo; returns (seconds, error or None)."""
    sock = connect(host, port)
    start = time.monotonic()
    send_error = []

    def sender():
        try:
            view = memoryview(payload)
            for offset in range(0, len(view), CHUNK):
                sock.sendall(view[offset : offset + CHUNK])
            sock.shutdown(socket.SHUT_WR)
        except OSError as err:
            send_error.append(err)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    received = 0
    error = None
    try:
        while True:
            data = sock.recv(262144)
            if not data:
                break
            end = received + len(data)
            if end > len(payload) or payload[received:end] != data:
                error = f"echo differs at or after byte {received}"
                break
            received = end
    except OSError as err:
        error = f"after {received} bytes: {err!r}"
    elapsed = time.monotonic() - start
    thread.join(TIMEOUT)
    sock.close()
    if error is None and send_error:
        error = f"send: {send_error[0]!r}"
    if error is None and received != len(payload):
        error = f"echo ended after {received} of {len(payload)} bytes"
    return elapsed, error


def seed(host, port):
    message = b"hello, lwip echo\n"
    sock = connect(host, port)
    sock.sendall(message)
    got = b""
    while len(got) < len(message):
        data = sock.recv(4096)
        if not data:
            break
        got += data
    sock.close()
    if got != message:
        print(f"seed: FAIL, sent {message!r}, got {got!r}")
        return 1
    print(f"seed: ok, {len(message)} bytes echoed")
    return 0


def bulk(host, port, size):
    payload = os.urandom(size)
    elapsed, error = stream(host, port, payload)
    if error:
        print(f"bulk: FAIL, {error}")
        return 1
    print(f"bulk: ok, {size} bytes byte-exact in {elapsed:.2f} s = {size / elapsed / 1e6:.1f} MB/s")
    return 0


def many(host, port, clients, size):
    payload = os.urandom(size)
    results = [None] * clients

    def client(index):
        try:
            results[index] = stream(host, port, payload)
        except OSError as err:
            results[index] = (0.0, f"connect: {err!r}")

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 4)
    elapsed = time.monotonic() - start
    failed = [(i, r) for i, r in enumerate(results) if r is None or r[1] is not None]
    total = clients * size
    slowest = max((r[0] for r in results if r is not None), default=0.0)
    if failed:
        for index, result in failed[:5]:
            print(f"many: client {index}: {result[1] if result else 'did not finish'}")
        print(f"many: FAIL, {len(failed)} of {clients} clients failed")
        return 1
    print(
        f"many: ok, {clients} clients x {size} bytes byte-exact in {elapsed:.2f} s"
        f" = {total / elapsed / 1e6:.1f} MB/s aggregate, slowest client {slowest:.2f} s"
    )
    return 0


def reset(host, port):
    """Sends 1 MB without reading, then aborts with an RST (SO_LINGER 0): the server must free
    that connection (its err callback) and go on serving."""
    sock = connect(host, port)
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 5
    while sent < (1 << 20) and time.monotonic() < deadline:
        try:
            sent += sock.send(b"r" * 65536)
        except BlockingIOError:
            time.sleep(0.01)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    time.sleep(0.2)
    if seed(host, port) != 0:
        print("reset: FAIL, no echo after a client reset")
        return 1
    print(f"reset: ok, a client reset after sending {sent} bytes unread; the server still echoes")
    return 0


def garbage(host, port, iface, mac, count):
    """Sends frames a damaged link could deliver (random bytes, truncated and bit-flipped
    IPv4/TCP/ARP headers, wrong lengths) straight onto the server's wire, then checks it is
    alive. Seeded, so a failure can be replayed."""
    import random

    rng = random.Random(9)
    dst = bytes.fromhex(mac.replace(":", ""))
    src = bytes.fromhex("02000000aa01")
    server_ip = socket.inet_aton(host)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))

    def ipv4_tcp():
        payload = rng.randbytes(rng.randrange(0, 1460))
        tcp = struct.pack("!HHIIBBHHH", rng.randrange(65536), port, rng.getrandbits(32),
                          rng.getrandbits(32), rng.randrange(256), rng.randrange(256),
                          rng.randrange(65536), rng.randrange(65536), 0)
        total = 20 + len(tcp) + len(payload)
        ip = struct.pack("!BBHHHBBH4s4s", rng.choice([0x45, 0x46, 0x4F, 0x44, 0x55]), 0,
                         rng.choice([total, rng.randrange(65536)]), 0, 0, 64, 6, 0,
                         socket.inet_aton("192.168.69.100"), server_ip)
        return b"\x08\x00" + ip + tcp + payload

    kinds = [
        lambda: rng.randbytes(rng.randrange(0, 1500)),
        lambda: b"\x08\x00" + rng.randbytes(rng.randrange(0, 1500)),
        lambda: b"\x08\x06" + rng.randbytes(rng.randrange(0, 60)),
        lambda: b"\x86\xdd" + rng.randbytes(rng.randrange(0, 1500)),
        lambda: rng.choice([b"\x08\x00", b"\x08\x06", b"\x86\xdd"]) + rng.randbytes(rng.randrange(0, 46)),
        ipv4_tcp,
    ]
    sent = 0
    for _ in range(count):
        body = rng.choice(kinds)()
        frame = bytearray(dst + src + body)
        if len(frame) > 14 and rng.random() < 0.5:
            bit = rng.randrange(14 * 8, len(frame) * 8)
            frame[bit // 8] ^= 1 << (bit % 8)
        try:
            raw.send(bytes(frame[:1514]))
            sent += 1
        except OSError:
            pass  # the kernel refuses some runts; they never reach the server
    raw.close()
    time.sleep(0.2)
    if seed(host, port) != 0:
        print(f"garbage: FAIL, no echo after {sent} malformed frames")
        return 1
    print(f"garbage: ok, {sent} malformed frames sent; the server still echoes")
    return 0


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, mode = argv[1], int(argv[2]), argv[3]
    if mode == "seed" and len(argv) == 4:
        return seed(host, port)
    if mode == "bulk" and len(argv) == 5:
        return bulk(host, port, int(argv[4]))
    if mode == "garbage" and len(argv) == 7:
        return garbage(host, port, argv[4], argv[5], int(argv[6]))
    if mode == "reset" and len(argv) == 4:
        return reset(host, port)
    if mode == "many" and len(argv) == 6:
        return many(host, port, int(argv[4]), int(argv[5]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
