#!/usr/bin/env python3
"""Drive the echo firmware from the host side (run inside the test's network namespace).

Every check asserts behaviour and raises on failure; every socket operation has a timeout.
Usage: host_test.py PORT SUITE   (SUITE: full | smoke)
"""
import os
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
TIMEOUT = 10.0
MESSAGE = b"Hello, echo server!"  # the seed's default message


def log(msg):
    print(f"  [host] {msg}", flush=True)


def recv_exactly(sock, n, deadline):
    got = bytearray()
    while len(got) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out with {len(got)} of {n} bytes echoed")
        chunk = sock.recv(min(65536, n - len(got)))
        if not chunk:
            raise AssertionError(f"connection closed after {len(got)} of {n} bytes")
        got.extend(chunk)
    return bytes(got)


def tcp_seed(port):
    """The seed's echo-client.py: connect, send the message, read it back, close."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
        s.sendall(MESSAGE)
        back = recv_exactly(s, len(MESSAGE), time.monotonic() + TIMEOUT)
        assert back == MESSAGE, f"tcp echo mismatch: {back!r}"
        s.shutdown(socket.SHUT_WR)
        # After our FIN the server echoes what is left (nothing) and closes too.
        s.settimeout(TIMEOUT)
        assert s.recv(1) == b"", "server did not close after our FIN"
    log(f"tcp seed client: {len(MESSAGE)} bytes echoed, orderly close")


def udp_exchange(port, payload, tries=5):
    """The seed's udpc.py: send a datagram, wait for the same payload back (bounded resends)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(1.0)
        for attempt in range(tries):
            u.sendto(payload, (HOST, port))
            try:
                data, _ = u.recvfrom(65536)
            except socket.timeout:
                continue
            assert data == payload, f"udp echo mismatch for {len(payload)} B"
            return attempt
        raise AssertionError(f"no udp echo of {len(payload)} B after {tries} tries")


def stream(port, total, chunk=16384, sock=None):
    """Send `total` random bytes while reading the echo; verify every byte."""
    data = os.urandom(total)
    s = sock or socket.create_connection((HOST, port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    result = {}

    def reader():
        try:
            result["got"] = recv_exactly(s, total, time.monotonic() + 120)
        except Exception as e:  # noqa: BLE001 - reported below
            result["err"] = e

    t = threading.Thread(target=reader)
    t.start()
    start = time.monotonic()
    for i in range(0, total, chunk):
        s.sendall(data[i:i + chunk])
    t.join(130)
    elapsed = time.monotonic() - start
    if "err" in result:
        raise result["err"]
    assert not t.is_alive(), "reader did not finish"
    assert result["got"] == data, "stream bytes differ"
    s.close()
    return elapsed


def concurrent(port, n=4, size=64 * 1024):
    """n clients at once, each streaming `size` bytes, all verified."""
    socks = [socket.create_connection((HOST, port), timeout=TIMEOUT) for _ in range(n)]
    errors = []

    def run(s):
        try:
            stream(port, size, chunk=4096, sock=s)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, f"concurrent clients failed: {errors}"
    assert not any(t.is_alive() for t in threads), "a concurrent client hung"
    log(f"{n} tcp clients at once: {size} bytes each, verified")


def held_syn(port, slots=4):
    """With every slot busy a further SYN is held (not refused) and served once a slot frees."""
    busy = []
    for _ in range(slots):
        s = socket.create_connection((HOST, port), timeout=TIMEOUT)
        s.sendall(b"busy")
        assert recv_exactly(s, 4, time.monotonic() + TIMEOUT) == b"busy"
        busy.append(s)
    # slirp accepts the host's connection at once and connects to the guest in the background,
    # so the fifth client sees its echo only when the firmware accepts.
    extra = socket.create_connection((HOST, port), timeout=TIMEOUT)
    extra.sendall(MESSAGE)
    extra.settimeout(1.5)
    try:
        early = extra.recv(64)
        raise AssertionError(f"fifth client got {early!r} while all {slots} slots were busy (b'': refused)")
    except socket.timeout:
        pass
    busy[0].close()
    start = time.monotonic()
    extra.settimeout(TIMEOUT)
    back = recv_exactly(extra, len(MESSAGE), time.monotonic() + 15)
    assert back == MESSAGE
    log(f"held SYN: fifth client waited, then served {time.monotonic() - start:.1f} s after a slot freed")
    extra.close()
    for s in busy[1:]:
        s.close()


def main():
    port = int(sys.argv[1])
    suite = sys.argv[2] if len(sys.argv) > 2 else "full"
    tcp_seed(port)
    retries = udp_exchange(port, MESSAGE)
    log(f"udp seed client: {len(MESSAGE)} B echoed ({retries} resends)")
    for size in (1, 1472):
        udp_exchange(port, bytes((i * 7 + size) & 0xFF for i in range(size)))
        log(f"udp {size} B datagram echoed byte for byte")
    if suite == "smoke":
        return
    concurrent(port)
    held_syn(port)
    total = 2 * 1024 * 1024
    secs = stream(port, total)
    log(f"tcp stream: {total} bytes verified in {secs:.2f} s ({total / secs / 1e6:.2f} MB/s)")
    tcp_seed(port)


if __name__ == "__main__":
    main()
