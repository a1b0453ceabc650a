//! What the network harnesses share: an echo node on one simulated link, a client host on
//! another, and the harness between them moving every frame by hand, so it can look at each
//! one and drop, duplicate, reorder, corrupt or forge frames.
//!
//! ```text
//!  server iface ── A ═ srv_link ═ B ── harness ── A ═ cli_link ═ B ── client iface
//! ```

use std::collections::VecDeque;

use smolecho::sim::frames::Peer;
use smolecho::sim::{self, Link, Side};
use smolecho::smoltcp::iface::{Interface, SocketSet, SocketStorage};
use smolecho::smoltcp::phy::{Device, RxToken};
use smolecho::smoltcp::socket::{Socket, tcp};
use smolecho::smoltcp::time::Instant;
use smolecho::smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv6Packet, IpAddress,
    IpCidr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6Packet, TcpPacket, UdpPacket,
};
use smolecho::{EchoNode, Sockets, TcpConfig, TcpStorage, UdpConfig, UdpStorage};

/// The echo service's port.
pub const PORT: u16 = 7;
/// TCP slots of the node under test.
pub const SLOTS: usize = 3;
/// Per-slot buffer sizes.
pub const SLOT_RX: usize = 2048;
pub const SLOT_TX: usize = 2048;
/// Datagrams and bytes of the UDP echo service.
pub const UDP_PACKETS: usize = 4;
pub const UDP_BYTES: usize = 1500;
/// Frames each link direction holds.
pub const LINK_FRAMES: usize = 32;

pub const SERVER_V4: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const CLIENT_V4: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
pub const SERVER_V6: Ipv6Address = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
pub const CLIENT_V6: Ipv6Address = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 2);
/// `sim::interface` MACs (the frame builders' `Peer`s use the same).
pub const SERVER_MAC: EthernetAddress = Peer::sim_mac(1);
pub const CLIENT_MAC: EthernetAddress = Peer::sim_mac(2);

pub type SimLink = Link<LINK_FRAMES>;

/// The server's address in the chosen IP version.
pub fn server_ip(v6: bool) -> IpAddress {
    if v6 {
        IpAddress::Ipv6(SERVER_V6)
    } else {
        IpAddress::Ipv4(SERVER_V4)
    }
}

/// The client's address in the chosen IP version.
pub fn client_ip(v6: bool) -> IpAddress {
    if v6 {
        IpAddress::Ipv6(CLIENT_V6)
    } else {
        IpAddress::Ipv4(CLIENT_V4)
    }
}

/// Memory of the node under test.
pub struct ServerStore {
    tcp: TcpStorage<SLOTS, SLOT_RX, SLOT_TX>,
    udp: UdpStorage<UDP_PACKETS, UDP_BYTES>,
}

impl ServerStore {
    pub fn boxed() -> Box<Self> {
        Box::new(Self {
            tcp: TcpStorage::new(),
            udp: UdpStorage::new(),
        })
    }
}

/// The node under test on side A of its link.
pub struct Server<'a> {
    pub iface: Interface,
    pub sockets: Sockets<'a>,
    pub node: EchoNode<'a>,
}

impl<'a> Server<'a> {
    pub fn new(
        store: &'a mut ServerStore,
        mem: &'a mut [SocketStorage<'a>],
        config: TcpConfig,
        link: &mut SimLink,
        now: Instant,
    ) -> Self {
        let addrs = [
            IpCidr::new(IpAddress::Ipv4(SERVER_V4), 24),
            IpCidr::new(IpAddress::Ipv6(SERVER_V6), 64),
        ];
        let iface = sim::interface(&mut link.end(Side::A), 1, &addrs, now);
        let mut sockets = Sockets::new(mem);
        let node = EchoNode::new(
            &mut sockets,
            config,
            store.tcp.buffers(),
            UdpConfig::on_port(PORT),
            store.udp.buffers(),
        )
        .expect("the node fits its socket set");
        Self {
            iface,
            sockets,
            node,
        }
    }

    pub fn poll(&mut self, now: Instant, link: &mut SimLink) -> bool {
        self.node.poll(
            now,
            &mut self.iface,
            &mut link.end(Side::A),
            &mut self.sockets,
        )
    }

    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.node.poll_at(now, &mut self.iface, &self.sockets)
    }

    /// The counters add up: every accepted connection ended with a counted reason
    /// (`ended()`: closed, reset, timed out, ...) or is still served by a slot; every byte taken was queued; every datagram was echoed or
    /// counted as dropped.
    pub fn check_counters(&self) {
        let c = self.node.tcp_counters();
        let active = self.node.active_connections() as u64;
        assert_eq!(
            c.accepted,
            c.ended() + active,
            "TCP counters do not add up ({active} active slots): {c:?}"
        );
        assert!(active <= SLOTS as u64);
        assert_eq!(c.bytes_in, c.bytes_out, "{c:?}");
        let u = self.node.udp_counters();
        assert_eq!(u.datagrams_in, u.datagrams_out + u.dropped, "{u:?}");
        assert!(u.bytes_out <= u.bytes_in, "{u:?}");
    }

    /// The TCP state of every slot's socket (the node's set holds no other TCP socket).
    pub fn slot_states(&mut self) -> Vec<tcp::State> {
        let states: Vec<_> = self
            .sockets
            .iter()
            .filter_map(|(_, socket)| match socket {
                Socket::Tcp(s) => Some(s.state()),
                _ => None,
            })
            .collect();
        assert_eq!(states.len(), SLOTS, "one TCP socket per slot");
        states
    }

    /// Panics unless every slot is listening and none is active.
    pub fn check_all_listening(&mut self, context: &str) {
        let states = self.slot_states();
        assert!(
            states.iter().all(|s| *s == tcp::State::Listen),
            "{context}: slots not all listening again: {states:?}, counters {:?}",
            self.node.tcp_counters()
        );
        assert_eq!(self.node.active_connections(), 0, "{context}");
    }
}

/// A client host on side B of its own link.
pub fn client_iface(link: &mut SimLink, now: Instant) -> Interface {
    let addrs = [
        IpCidr::new(IpAddress::Ipv4(CLIENT_V4), 24),
        IpCidr::new(IpAddress::Ipv6(CLIENT_V6), 64),
    ];
    sim::interface(&mut link.end(Side::B), 2, &addrs, now)
}

/// The two links and the frames the harness holds between them.
pub struct Wire {
    /// The server is side A.
    pub srv_link: Box<SimLink>,
    /// The client host is side B.
    pub cli_link: Box<SimLink>,
    /// Frames on their way to the server, oldest first.
    pub to_srv: VecDeque<Vec<u8>>,
    /// Frames on their way to the client host, oldest first.
    pub to_cli: VecDeque<Vec<u8>>,
}

impl Default for Wire {
    fn default() -> Self {
        Self::new()
    }
}

impl Wire {
    pub fn new() -> Self {
        Self {
            srv_link: Box::new(Link::new()),
            cli_link: Box::new(Link::new()),
            to_srv: VecDeque::new(),
            to_cli: VecDeque::new(),
        }
    }

    /// Take what the server sent; `each` sees every frame first.
    pub fn collect_from_server(&mut self, now: Instant, mut each: impl FnMut(&[u8])) {
        let mut end = self.srv_link.end(Side::B);
        while let Some((rx, _)) = end.receive(now) {
            let frame = rx.consume(|b| {
                each(b);
                b.to_vec()
            });
            self.to_cli.push_back(frame);
        }
    }

    /// Take what the client host sent; `each` sees every frame first.
    pub fn collect_from_client(&mut self, now: Instant, mut each: impl FnMut(&[u8])) {
        let mut end = self.cli_link.end(Side::A);
        while let Some((rx, _)) = end.receive(now) {
            let frame = rx.consume(|b| {
                each(b);
                b.to_vec()
            });
            self.to_srv.push_back(frame);
        }
    }

    /// Hand every held frame to its destination (frames that do not fit are lost, as on a
    /// full NIC ring).
    pub fn deliver(&mut self) {
        for frame in self.to_srv.drain(..) {
            let _ = self.srv_link.inject(Side::A, &frame);
        }
        for frame in self.to_cli.drain(..) {
            let _ = self.cli_link.inject(Side::B, &frame);
        }
    }

    /// Whether no frame is held or queued anywhere.
    pub fn is_idle(&self) -> bool {
        self.to_srv.is_empty()
            && self.to_cli.is_empty()
            && self.srv_link.is_idle()
            && self.cli_link.is_idle()
    }
}

/// Poll the client host.
pub fn poll_client(
    iface: &mut Interface,
    link: &mut SimLink,
    sockets: &mut SocketSet<'_>,
    now: Instant,
) -> bool {
    iface.poll(now, &mut link.end(Side::B), sockets) != smolecho::smoltcp::iface::PollResult::None
}

/// The interesting fields of a TCP segment in an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSeen<'f> {
    pub v6: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub window: u16,
    pub payload: &'f [u8],
}

impl TcpSeen<'_> {
    /// Sequence space the segment takes.
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.syn) + u32::from(self.fin)
    }
}

/// The IP payload of an Ethernet frame with protocol `proto`, and whether it is IPv6.
pub fn ip_payload(frame: &[u8], proto: IpProtocol) -> Option<(bool, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let payload = &frame[frame.len() - eth.payload().len()..];
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(payload).ok()?;
            if ip.next_header() != proto || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let inner = ip.payload();
            let start = usize::from(ip.header_len());
            Some((false, payload.get(start..start + inner.len())?))
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(payload).ok()?;
            if ip.next_header() != proto {
                return None;
            }
            let len = ip.payload().len();
            Some((true, payload.get(40..40 + len)?))
        }
        _ => None,
    }
}

/// Recompute the IPv4 header checksum and the TCP/UDP checksum of a (mutated) frame, where
/// the headers still parse, so the mutation gets past the checksum checks.
pub fn refresh_checksums(frame: &mut [u8]) {
    if frame.len() < 14 {
        return;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &mut frame[14..];
    let (src, dst, proto, start, end) = if ethertype == 0x0800 {
        let Ok(mut p) = Ipv4Packet::new_checked(&mut ip[..]) else {
            return;
        };
        p.fill_checksum();
        let (s, d, n) = (p.src_addr(), p.dst_addr(), p.next_header());
        let start = usize::from(p.header_len());
        let end = usize::from(p.total_len());
        (IpAddress::Ipv4(s), IpAddress::Ipv4(d), n, start, end)
    } else if ethertype == 0x86dd {
        let Ok(p) = Ipv6Packet::new_checked(&mut ip[..]) else {
            return;
        };
        let (s, d, n) = (p.src_addr(), p.dst_addr(), p.next_header());
        let end = 40 + usize::from(p.payload_len());
        (IpAddress::Ipv6(s), IpAddress::Ipv6(d), n, 40, end)
    } else {
        return;
    };
    let Some(l4) = ip.get_mut(start..end) else {
        return;
    };
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut p) = TcpPacket::new_checked(&mut l4[..]) {
                p.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut p) = UdpPacket::new_checked(&mut l4[..]) {
                p.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut p) = Icmpv4Packet::new_checked(&mut l4[..]) {
                p.fill_checksum();
            }
        }
        IpProtocol::Icmpv6 => {
            if let (Ok(mut p), IpAddress::Ipv6(s), IpAddress::Ipv6(d)) =
                (Icmpv6Packet::new_checked(&mut l4[..]), src, dst)
            {
                p.fill_checksum(&s, &d);
            }
        }
        _ => {}
    }
}

/// Parse a TCP segment out of an Ethernet frame (no checksum check).
pub fn parse_tcp(frame: &[u8]) -> Option<TcpSeen<'_>> {
    let (v6, bytes) = ip_payload(frame, IpProtocol::Tcp)?;
    let tcp = TcpPacket::new_checked(bytes).ok()?;
    let header = usize::from(tcp.header_len());
    Some(TcpSeen {
        v6,
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack().then(|| tcp.ack_number().0 as u32),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        window: tcp.window_len(),
        payload: bytes.get(header..)?,
    })
}

/// Parse a UDP datagram out of an Ethernet frame: `(v6, src_port, dst_port, payload)`.
pub fn parse_udp(frame: &[u8]) -> Option<(bool, u16, u16, &[u8])> {
    let (v6, bytes) = ip_payload(frame, IpProtocol::Udp)?;
    let udp = UdpPacket::new_checked(bytes).ok()?;
    let len = udp.payload().len();
    Some((v6, udp.src_port(), udp.dst_port(), bytes.get(8..8 + len)?))
}

/// A deterministic byte pattern of `len` bytes, different for each `salt`.
pub fn pattern(len: usize, salt: u32) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ salt.wrapping_mul(0x85eb_ca6b) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Storage for a client socket set.
pub fn socket_mem<'a>(n: usize) -> Vec<SocketStorage<'a>> {
    (0..n).map(|_| SocketStorage::EMPTY).collect()
}
