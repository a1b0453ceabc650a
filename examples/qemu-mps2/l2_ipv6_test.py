#!/usr/bin/env python3
"""IPv6 echo over a raw Ethernet link to the firmware (run inside the test's namespace).

QEMU 7.2's user network cannot forward IPv6 from the host, so the ipv6 image also runs with
`-nic socket,udp=127.0.0.1:A,localaddr=127.0.0.1:B`: QEMU sends each Ethernet frame of the
LAN9118 as one UDP datagram to port A on loopback and takes frames from port B. This script
is the other host on that link (fec0::1): it answers the firmware's neighbour solicitations,
sends UDP datagrams to fec0::15 port 7 and checks every echo byte for byte (and its checksum).
(smoltcp's automatic ICMP echo reply is a feature the firmware leaves off, so no ping.)
Usage: l2_ipv6_test.py PORT_A PORT_B
"""
import socket
import struct
import sys
import time

OUR_MAC = bytes.fromhex("020000000001")
FW_MAC = bytes.fromhex("525400123456")
OUR_IP = socket.inet_pton(socket.AF_INET6, "fec0::1")
FW_IP = socket.inet_pton(socket.AF_INET6, "fec0::15")
ETH_IPV6 = 0x86DD
UDP, ICMP6 = 17, 58


def log(msg):
    print(f"  [l2] {msg}", flush=True)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv6(src, dst, nh, payload, hop=64):
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, hop) + src + dst + payload


def l4_csum(src, dst, nh, segment):
    return csum(src + dst + struct.pack("!IxxxB", len(segment), nh) + segment)


def frame(dst_mac, packet):
    return dst_mac + OUR_MAC + struct.pack("!H", ETH_IPV6) + packet


def udp_packet(sport, dport, payload):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = l4_csum(OUR_IP, FW_IP, UDP, seg) or 0xFFFF
    seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return ipv6(OUR_IP, FW_IP, UDP, seg)


def icmp6(src, dst, typ, code, body, hop=64):
    msg = struct.pack("!BBH", typ, code, 0) + body
    c = l4_csum(src, dst, ICMP6, msg)
    return ipv6(src, dst, ICMP6, msg[:2] + struct.pack("!H", c) + msg[4:], hop)


class Link:
    def __init__(self, port_a, port_b):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port_a))
        self.peer = ("127.0.0.1", port_b)
        self.solicitations = 0

    def send(self, data):
        self.sock.sendto(data, self.peer)

    def wait_for(self, match, timeout=5.0):
        """Receive frames until match(ip_nh, src, dst, l4) returns a value; answer NS meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = self.sock.recvfrom(4096)
            except socket.timeout:
                break
            if len(data) < 54 or struct.unpack("!H", data[12:14])[0] != ETH_IPV6:
                continue
            plen, nh = struct.unpack("!HB", data[18:21])
            src, dst, l4 = data[22:38], data[38:54], data[54:54 + plen]
            if nh == ICMP6 and l4[0] == 135 and l4[8:24] == OUR_IP:
                # Neighbour solicitation for us: solicited + override advertisement with our MAC.
                self.solicitations += 1
                na = struct.pack("!I", 0x60000000) + OUR_IP + bytes([2, 1]) + OUR_MAC
                self.send(frame(data[6:12], icmp6(OUR_IP, src, 136, 0, na, hop=255)))
                continue
            got = match(nh, src, dst, l4)
            if got is not None:
                return got
        raise AssertionError("no matching frame from the firmware within the timeout")


def main():
    link = Link(int(sys.argv[1]), int(sys.argv[2]))
    # Our address first: an unsolicited advertisement to all nodes, as a host joining would.
    na = struct.pack("!I", 0x20000000) + OUR_IP + bytes([2, 1]) + OUR_MAC
    all_nodes = socket.inet_pton(socket.AF_INET6, "ff02::1")
    link.send(bytes.fromhex("333300000001") + OUR_MAC + struct.pack("!H", ETH_IPV6)
              + icmp6(OUR_IP, all_nodes, 136, 0, na, hop=255))

    for n, size in enumerate((1, 19, 1232, 1452)):
        payload = bytes((i * 13 + size) & 0xFF for i in range(size))
        sport = 40000 + n
        link.send(frame(FW_MAC, udp_packet(sport, 7, payload)))

        def udp_reply(nh, src, dst, l4, sport=sport):
            if nh != UDP or src != FW_IP or dst != OUR_IP:
                return None
            s, d, length, c = struct.unpack("!HHHH", l4[:8])
            if (s, d) != (7, sport):
                return None
            assert l4_csum(src, dst, UDP, l4[:length]) == 0, "bad UDP checksum in the echo"
            return l4[8:length]

        back = link.wait_for(udp_reply)
        assert back == payload, f"udp over ipv6: {size} B echo differs"
        log(f"udp over ipv6: {size} B datagram echoed byte for byte")

    # The firmware must have resolved us through neighbour discovery (or our advertisement).
    log(f"neighbour solicitations answered: {link.solicitations}")


if __name__ == "__main__":
    main()
