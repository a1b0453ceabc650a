#!/usr/bin/env python3
"""The kernel baseline of the benchmark suite: the seed's thread-per-client echo server.

TCP: one thread per accepted client, ``recv(BUFLEN)`` then ``sendall`` until the client
closes. UDP: one thread, ``recvfrom(BUFLEN)`` then ``sendto``. Both on the same port, IPv4
and IPv6 (one dual-stack socket each), on the Linux kernel's TCP/IP stack.
Usage: ``kernel_echo.py [PORT] [BUFLEN]`` (defaults 8000 and 4096).
"""

import socket
import sys
import threading


def serve_client(conn, buflen):
    with conn:
        while True:
            try:
                data = conn.recv(buflen)
            except OSError:
                return
            if not data:
                return
            try:
                conn.sendall(data)
            except OSError:
                return


def serve_tcp(port, buflen):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("", port))
    sock.listen(128)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve_client, args=(conn, buflen), daemon=True).start()


def serve_udp(port, buflen):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("", port))
    while True:
        data, addr = sock.recvfrom(buflen)
        sock.sendto(data, addr)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    buflen = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
    threading.Thread(target=serve_udp, args=(port, buflen), daemon=True).start()
    print(f"kernel echo listening on tcp and udp port {port}", flush=True)
    serve_tcp(port, buflen)


if __name__ == "__main__":
    main()
