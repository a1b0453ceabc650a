//! Frame builders shared by every test layer: the unit tests beside the code, the simulator
//! scenarios, the TAP tests (which write these frames onto a real TAP) and the fuzz targets.
//!
//! Each builder returns one complete Ethernet frame with every checksum filled in, so a test
//! corrupts a frame on purpose or not at all.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpEndpoint,
    IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    UdpPacket, UdpRepr,
};
#[cfg(feature = "proto-ipv6")]
use smoltcp::wire::{Ipv6Address, Ipv6Packet, Ipv6Repr};

pub use super::Frame;

/// The Ethernet header's length.
const ETHERNET_HEADER: usize = 14;

/// One end of a frame: its MAC, IP address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The Ethernet address.
    pub mac: EthernetAddress,
    /// The IP address (its family decides the frame's).
    pub addr: IpAddress,
    /// The TCP or UDP port.
    pub port: u16,
}

impl Peer {
    /// The MAC the simulator gives the host whose MAC ends in `last`
    /// ([`interface`](super::interface)).
    pub const fn sim_mac(last: u8) -> EthernetAddress {
        EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, last])
    }

    /// The tests' server on IPv4: 10.0.0.1, MAC ending in 1.
    pub const fn server_v4(port: u16) -> Self {
        Self {
            mac: Self::sim_mac(1),
            addr: IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)),
            port,
        }
    }

    /// The tests' client host on IPv4: 10.0.0.2, MAC ending in 2.
    pub const fn client_v4(port: u16) -> Self {
        Self {
            mac: Self::sim_mac(2),
            addr: IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)),
            port,
        }
    }

    /// The tests' server on IPv6: fdaa::1.
    #[cfg(feature = "proto-ipv6")]
    pub const fn server_v6(port: u16) -> Self {
        Self {
            mac: Self::sim_mac(1),
            addr: IpAddress::Ipv6(Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1)),
            port,
        }
    }

    /// The tests' client host on IPv6: fdaa::2.
    #[cfg(feature = "proto-ipv6")]
    pub const fn client_v6(port: u16) -> Self {
        Self {
            mac: Self::sim_mac(2),
            addr: IpAddress::Ipv6(Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 2)),
            port,
        }
    }

    /// The same host on another port.
    pub const fn on_port(self, port: u16) -> Self {
        Self { port, ..self }
    }

    /// Its IP endpoint.
    pub fn endpoint(&self) -> IpEndpoint {
        IpEndpoint::new(self.addr, self.port)
    }
}

/// A TCP segment from `src` to `dst`: `control`, sequence number `seq`, acknowledgement `ack`,
/// a 64,240-byte window, MSS 1460 on a SYN, and `payload`.
pub fn tcp(
    src: &Peer,
    dst: &Peer,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Frame {
    let repr = TcpRepr {
        src_port: src.port,
        dst_port: dst.port,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 64240,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    tcp_repr(src, dst, &repr)
}

/// An initial SYN from `src` to `dst` with sequence number `seq`.
pub fn syn(src: &Peer, dst: &Peer, seq: u32) -> Frame {
    tcp(src, dst, TcpControl::Syn, seq, None, &[])
}

/// Any TCP segment (`repr`'s ports are used as they are) from `src`'s to `dst`'s address.
pub fn tcp_repr(src: &Peer, dst: &Peer, repr: &TcpRepr<'_>) -> Frame {
    ip_frame(src, dst, IpProtocol::Tcp, repr.buffer_len(), |payload| {
        let mut segment = TcpPacket::new_unchecked(payload);
        repr.emit(
            &mut segment,
            &src.addr,
            &dst.addr,
            &ChecksumCapabilities::default(),
        );
    })
}

/// A UDP datagram from `src` to `dst` carrying `payload`.
pub fn udp(src: &Peer, dst: &Peer, payload: &[u8]) -> Frame {
    let repr = UdpRepr {
        src_port: src.port,
        dst_port: dst.port,
    };
    let len = repr.header_len().saturating_add(payload.len());
    ip_frame(src, dst, IpProtocol::Udp, len, |buf| {
        let mut datagram = UdpPacket::new_unchecked(buf);
        repr.emit(
            &mut datagram,
            &src.addr,
            &dst.addr,
            payload.len(),
            |p| p.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
    })
}

/// An IP packet from `src`'s to `dst`'s address (the ports are not used) carrying `payload`
/// as `protocol`: for protocols the builders above do not make, and for payloads a test
/// breaks byte by byte.
pub fn ip(src: &Peer, dst: &Peer, protocol: IpProtocol, payload: &[u8]) -> Frame {
    ip_frame(src, dst, protocol, payload.len(), |buf| {
        buf.iter_mut().zip(payload).for_each(|(b, p)| *b = *p);
    })
}

/// Ethernet + IP header for a `len`-byte transport payload written by `emit`. A payload that
/// does not fit a frame gives an empty frame (no test sends one on purpose).
fn ip_frame(
    src: &Peer,
    dst: &Peer,
    protocol: IpProtocol,
    len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Frame {
    let mut frame = Frame::new();
    let (ethertype, ip_len) = match (src.addr, dst.addr) {
        (IpAddress::Ipv4(_), IpAddress::Ipv4(_)) => (EthernetProtocol::Ipv4, 20usize),
        #[cfg(feature = "proto-ipv6")]
        (IpAddress::Ipv6(_), IpAddress::Ipv6(_)) => (EthernetProtocol::Ipv6, 40usize),
        #[allow(unreachable_patterns)]
        _ => return frame,
    };
    let total = ETHERNET_HEADER.saturating_add(ip_len).saturating_add(len);
    if frame.resize(total, 0).is_err() {
        return Frame::new();
    }
    let mut eth = EthernetFrame::new_unchecked(frame.as_mut_slice());
    EthernetRepr {
        src_addr: src.mac,
        dst_addr: dst.mac,
        ethertype,
    }
    .emit(&mut eth);
    match (src.addr, dst.addr) {
        (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) => {
            let ip = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: protocol,
                payload_len: len,
                hop_limit: 64,
            };
            let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
            ip.emit(&mut packet, &ChecksumCapabilities::default());
            emit(packet.payload_mut());
        }
        #[cfg(feature = "proto-ipv6")]
        (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
            let ip = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: protocol,
                payload_len: len,
                hop_limit: 64,
            };
            let mut packet = Ipv6Packet::new_unchecked(eth.payload_mut());
            ip.emit(&mut packet);
            emit(packet.payload_mut());
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
    frame
}
