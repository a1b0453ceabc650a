//! Target `frames`: Ethernet frames into an interface running an [`EchoNode`].
//!
//! The input first picks the node's settings and opens up to three real TCP connections from
//! a smoltcp client host (IPv4 or IPv6), so slots are in live states. Then it is a list of
//! operations, each followed by one round of polling (node, then client host, 1 ms apart):
//!
//! - segments built field by field around a live connection: any flag combination, sequence
//!   and acknowledgement numbers relative to what the harness saw on the wire, window, data
//!   offset, raw option bytes, payload, urgent pointer, good or bad checksums, IP-level
//!   tweaks (hop limit, bad lengths, fragments), spoofed sources;
//! - UDP datagrams to the echo port or elsewhere, with bad lengths or checksums;
//! - an Ethernet header around fuzzer bytes (IPv4, IPv6, ARP or any ethertype), and fully
//!   raw frames;
//! - mutations of a real client frame, with checksums recomputed or not;
//! - client actions: connect, send, stop or resume reading, close, abort;
//! - link faults on the frames in flight: drop, duplicate, swap;
//! - clock jumps from 1 ms to minutes.
//!
//! Checked after every round: no panic, the counters add up. At the end the client host
//! either aborts everything or vanishes, the clock runs past every timeout, and every slot
//! must be listening again with the counters still adding up.

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use smolecho::fuzzing::RST_GRACE;
use smolecho::smoltcp::iface::SocketHandle;
use smolecho::smoltcp::phy::ChecksumCapabilities;
use smolecho::smoltcp::socket::tcp;
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpEndpoint,
    IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr, TcpPacket,
    TcpSeqNumber, UdpPacket,
};
use smolecho::{Overflow, Sockets, TcpConfig};

use crate::net::{self, CLIENT_MAC, PORT, SERVER_MAC, Server, ServerStore, Wire};

/// Client sockets on the client host.
const CLIENTS: usize = 3;
/// Client socket buffer sizes.
const CLIENT_BUF: usize = 4096;
/// Operations taken from one input.
const MAX_OPS: usize = 160;
/// Rounds allowed to settle at the end.
const SETTLE_ROUNDS: usize = 4000;
/// Frames larger than this do not fit the link.
const MAX_FRAME: usize = smolecho::sim::MAX_FRAME;

#[derive(Debug, Arbitrary)]
struct Setup {
    refuse: bool,
    idle_secs: u8,
    handshake_secs: u8,
    ack_delay: bool,
    keep_alive: bool,
    /// Connections opened before the operations, with their IP version.
    initial: [Option<bool>; CLIENTS],
    /// At the end the client host disappears instead of aborting its connections.
    vanish: bool,
}

/// Which connection a forged segment belongs to.
#[derive(Debug, Arbitrary)]
enum Target {
    /// A connection the harness saw on the wire (index modulo their number).
    Live(u8),
    /// A new 4-tuple; `spoof` 0 is the client host's address, others are unanswered hosts.
    Fresh { port: u16, v6: bool, spoof: u8 },
}

#[derive(Debug, Arbitrary)]
enum SeqChoice {
    /// Relative to the next sequence number the server expects (its last ACK).
    Expected(i16),
    /// Relative to the next sequence number the client would use.
    ClientNext(i16),
    Raw(u32),
}

#[derive(Debug, Arbitrary)]
enum AckChoice {
    /// Relative to the server's next sequence number.
    ServerNext(i16),
    /// Relative to what the client last acknowledged.
    ClientAcked(i16),
    Raw(u32),
}

#[derive(Debug, Arbitrary)]
enum Payload {
    Fill { len: u16, byte: u8 },
    Bytes(Vec<u8>),
}

impl Payload {
    fn bytes(&self, room: usize) -> Vec<u8> {
        match self {
            Payload::Fill { len, byte } => vec![*byte; usize::from(*len).min(room)],
            Payload::Bytes(b) => b[..b.len().min(room)].to_vec(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum IpTweak {
    None,
    HopLimit(u8),
    /// IPv4 total length or IPv6 payload length, set after the fact (checksum refreshed).
    Length(u16),
    /// IPv4 fragment fields.
    Fragment {
        more: bool,
        offset: u16,
    },
    /// Another destination address (last byte).
    Destination(u8),
    /// A broadcast Ethernet destination.
    Broadcast,
}

#[derive(Debug, Arbitrary)]
struct TcpSpec {
    target: Target,
    /// FIN SYN RST PSH ACK URG ECE CWR NS, low bit first.
    flags: u16,
    seq: SeqChoice,
    ack: AckChoice,
    window: u16,
    /// A raw data-offset nibble instead of the right one.
    data_offset: Option<u8>,
    options: Vec<u8>,
    payload: Payload,
    urgent: u16,
    ip: IpTweak,
    /// To the echo port (`true`) or to `port`.
    to_echo: bool,
    port: u16,
}

#[derive(Debug, Arbitrary)]
struct UdpSpec {
    v6: bool,
    spoof: u8,
    src_port: u16,
    to_echo: bool,
    dst_port: u16,
    length: Option<u16>,
    payload: Payload,
    ip: IpTweak,
}

#[derive(Debug, Arbitrary)]
enum EthKind {
    Ipv4,
    Ipv6,
    Arp,
    Other(u16),
}

#[derive(Debug, Arbitrary)]
enum Tick {
    Ms(u8),
    Secs(u8),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Tcp(Box<TcpSpec>),
    Udp(Box<UdpSpec>),
    Eth {
        kind: EthKind,
        broadcast: bool,
        body: Vec<u8>,
    },
    Raw(Vec<u8>),
    Mutate {
        pick: u8,
        edits: Vec<(u16, u8)>,
        cut: Option<u16>,
        refresh: bool,
    },
    Connect {
        slot: u8,
        v6: bool,
    },
    Send {
        conn: u8,
        len: u16,
    },
    ToggleRead(u8),
    Close(u8),
    Abort(u8),
    DropFrame {
        to_server: bool,
        index: u8,
    },
    Duplicate {
        to_server: bool,
        index: u8,
    },
    Swap {
        to_server: bool,
        index: u8,
    },
    Advance(Tick),
    Rounds(u8),
}

/// What one run reached, for the tests that check inputs do what they were written for.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub ops: usize,
    pub counters: smolecho::TcpCounters,
    pub udp: smolecho::UdpCounters,
    /// Every slot socket state seen after a round.
    pub slot_states: Vec<tcp::State>,
    /// Forged frames injected.
    pub forged: usize,
    /// Rounds the settling took.
    pub settle_rounds: usize,
}

/// What the harness saw of one connection (keyed by client port).
#[derive(Debug, Default, Clone, Copy)]
struct Track {
    v6: bool,
    /// The server's next sequence number.
    srv_nxt: u32,
    /// The server's last acknowledgement: what it expects next.
    srv_ack: u32,
    /// The client's next sequence number.
    cli_nxt: u32,
    /// The client's last acknowledgement.
    cli_ack: u32,
}

struct Client {
    handle: SocketHandle,
    port: u16,
    v6: bool,
    reading: bool,
    sent: u32,
}

struct Sniffer {
    tracks: HashMap<u16, Track>,
    /// Ports in first-seen order, for `Target::Live`.
    order: Vec<u16>,
    /// The last real client frames, for `Op::Mutate`.
    recent: Vec<Vec<u8>>,
}

impl Sniffer {
    fn saw_server(&mut self, frame: &[u8]) {
        let Some(seg) = net::parse_tcp(frame) else {
            return;
        };
        if seg.src_port != PORT {
            return;
        }
        let t = self.track(seg.dst_port, seg.v6);
        t.srv_nxt = seg.seq.wrapping_add(seg.seq_len());
        if let Some(ack) = seg.ack {
            t.srv_ack = ack;
        }
    }

    fn saw_client(&mut self, frame: &[u8]) {
        if self.recent.len() >= 8 {
            self.recent.remove(0);
        }
        self.recent.push(frame.to_vec());
        let Some(seg) = net::parse_tcp(frame) else {
            return;
        };
        if seg.dst_port != PORT {
            return;
        }
        let t = self.track(seg.src_port, seg.v6);
        t.cli_nxt = seg.seq.wrapping_add(seg.seq_len());
        if let Some(ack) = seg.ack {
            t.cli_ack = ack;
        }
    }

    fn track(&mut self, port: u16, v6: bool) -> &mut Track {
        if !self.tracks.contains_key(&port) {
            self.order.push(port);
        }
        let t = self.tracks.entry(port).or_default();
        t.v6 = v6;
        t
    }
}

fn spoofed(v6: bool, spoof: u8) -> IpAddress {
    match (v6, spoof) {
        (v6, 0) => net::client_ip(v6),
        (false, s) => IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2u8.saturating_add(s))),
        (true, s) => IpAddress::Ipv6(Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 2 + u16::from(s))),
    }
}

fn other_dst(v6: bool, last: u8) -> IpAddress {
    if v6 {
        IpAddress::Ipv6(Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, u16::from(last)))
    } else {
        IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, last))
    }
}

/// Wrap a transport segment in IP and Ethernet, applying `tweak`.
fn ip_frame(
    src: IpAddress,
    dst: IpAddress,
    proto: IpProtocol,
    l4: &[u8],
    tweak: &IpTweak,
) -> Vec<u8> {
    let dst = match tweak {
        IpTweak::Destination(last) => other_dst(matches!(dst, IpAddress::Ipv6(_)), *last),
        _ => dst,
    };
    let mac_dst = match tweak {
        IpTweak::Broadcast => EthernetAddress::BROADCAST,
        _ => SERVER_MAC,
    };
    let (ethertype, ip_len) = match (src, dst) {
        (IpAddress::Ipv4(_), IpAddress::Ipv4(_)) => (EthernetProtocol::Ipv4, 20),
        _ => (EthernetProtocol::Ipv6, 40),
    };
    let mut frame = vec![0u8; 14 + ip_len + l4.len()];
    EthernetRepr {
        src_addr: CLIENT_MAC,
        dst_addr: mac_dst,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    frame[14 + ip_len..].copy_from_slice(l4);
    let ip = &mut frame[14..];
    match (src, dst) {
        (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) => {
            let mut packet = Ipv4Packet::new_unchecked(&mut ip[..]);
            Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: proto,
                payload_len: l4.len(),
                hop_limit: 64,
            }
            .emit(&mut packet, &ChecksumCapabilities::default());
            match tweak {
                IpTweak::HopLimit(h) => packet.set_hop_limit(*h),
                IpTweak::Length(l) => packet.set_total_len(*l),
                IpTweak::Fragment { more, offset } => {
                    packet.set_more_frags(*more);
                    packet.set_frag_offset(*offset & !7);
                }
                _ => {}
            }
            packet.fill_checksum();
        }
        (s, d) => {
            let to_v6 = |a: IpAddress| match a {
                IpAddress::Ipv6(a) => a,
                IpAddress::Ipv4(_) => net::CLIENT_V6,
            };
            let mut packet = Ipv6Packet::new_unchecked(&mut ip[..]);
            Ipv6Repr {
                src_addr: to_v6(s),
                dst_addr: to_v6(d),
                next_header: proto,
                payload_len: l4.len(),
                hop_limit: 64,
            }
            .emit(&mut packet);
            match tweak {
                IpTweak::HopLimit(h) => packet.set_hop_limit(*h),
                IpTweak::Length(l) => packet.set_payload_len(*l),
                _ => {}
            }
        }
    }
    frame
}

fn tcp_frame(spec: &TcpSpec, sniff: &Sniffer) -> Vec<u8> {
    let (port, v6, src, track) = match spec.target {
        Target::Live(i) if !sniff.order.is_empty() => {
            let port = sniff.order[usize::from(i) % sniff.order.len()];
            let t = sniff.tracks[&port];
            (port, t.v6, net::client_ip(t.v6), t)
        }
        Target::Live(_) => (40000, false, net::client_ip(false), Track::default()),
        Target::Fresh { port, v6, spoof } => {
            let t = sniff.tracks.get(&port).copied().unwrap_or_default();
            (port, v6, spoofed(v6, spoof), t)
        }
    };
    let dst = net::server_ip(v6);
    let rel = |base: u32, off: i16| base.wrapping_add(off as i32 as u32);
    let seq = match spec.seq {
        SeqChoice::Expected(o) => rel(track.srv_ack, o),
        SeqChoice::ClientNext(o) => rel(track.cli_nxt, o),
        SeqChoice::Raw(s) => s,
    };
    let ack = match spec.ack {
        AckChoice::ServerNext(o) => rel(track.srv_nxt, o),
        AckChoice::ClientAcked(o) => rel(track.cli_ack, o),
        AckChoice::Raw(a) => a,
    };
    let opts = &spec.options[..spec.options.len().min(40)];
    let header = 20 + opts.len().div_ceil(4) * 4;
    let room = MAX_FRAME - 14 - if v6 { 40 } else { 20 } - header;
    let payload = spec.payload.bytes(room);
    let mut seg = vec![0u8; header + payload.len()];
    {
        let mut p = TcpPacket::new_unchecked(&mut seg[..]);
        p.set_src_port(port);
        p.set_dst_port(if spec.to_echo { PORT } else { spec.port });
        p.set_seq_number(TcpSeqNumber(seq as i32));
        p.set_ack_number(TcpSeqNumber(ack as i32));
        p.set_header_len(header as u8);
        let f = spec.flags;
        p.set_fin(f & 1 != 0);
        p.set_syn(f & 2 != 0);
        p.set_rst(f & 4 != 0);
        p.set_psh(f & 8 != 0);
        p.set_ack(f & 16 != 0);
        p.set_urg(f & 32 != 0);
        p.set_ece(f & 64 != 0);
        p.set_cwr(f & 128 != 0);
        p.set_ns(f & 256 != 0);
        p.set_window_len(spec.window);
        p.set_urgent_at(spec.urgent);
    }
    seg[20..20 + opts.len()].copy_from_slice(opts);
    seg[header..].copy_from_slice(&payload);
    let mut p = TcpPacket::new_unchecked(&mut seg[..]);
    if let Some(nibble) = spec.data_offset {
        p.set_header_len((nibble & 0xf) * 4);
    }
    p.fill_checksum(&src, &dst);
    ip_frame(src, dst, IpProtocol::Tcp, &seg, &spec.ip)
}

fn udp_frame(spec: &UdpSpec) -> Vec<u8> {
    let src = spoofed(spec.v6, spec.spoof);
    let dst = net::server_ip(spec.v6);
    let room = MAX_FRAME - 14 - if spec.v6 { 40 } else { 20 } - 8;
    let payload = spec.payload.bytes(room);
    let mut seg = vec![0u8; 8 + payload.len()];
    seg[8..].copy_from_slice(&payload);
    let mut p = UdpPacket::new_unchecked(&mut seg[..]);
    p.set_src_port(spec.src_port);
    p.set_dst_port(if spec.to_echo { PORT } else { spec.dst_port });
    p.set_len((8 + payload.len()) as u16);
    p.fill_checksum(&src, &dst);
    // A wrong length goes in after the checksum (smoltcp's checksum trusts the length).
    if let Some(len) = spec.length {
        p.set_len(len);
    }
    ip_frame(src, dst, IpProtocol::Udp, &seg, &spec.ip)
}

fn eth_frame(kind: &EthKind, broadcast: bool, body: &[u8]) -> Vec<u8> {
    let ethertype = match kind {
        EthKind::Ipv4 => EthernetProtocol::Ipv4,
        EthKind::Ipv6 => EthernetProtocol::Ipv6,
        EthKind::Arp => EthernetProtocol::Arp,
        EthKind::Other(t) => EthernetProtocol::from(*t),
    };
    let body = &body[..body.len().min(MAX_FRAME - 14)];
    let mut frame = vec![0u8; 14 + body.len()];
    EthernetRepr {
        src_addr: CLIENT_MAC,
        dst_addr: if broadcast {
            EthernetAddress::BROADCAST
        } else {
            SERVER_MAC
        },
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    frame[14..].copy_from_slice(body);
    frame
}

/// Everything one run needs, borrowed from storage that lives in [`run`].
struct World<'a, 'c> {
    now: Instant,
    wire: Wire,
    server: Server<'a>,
    client_iface: smolecho::smoltcp::iface::Interface,
    client_sockets: Sockets<'c>,
    clients: Vec<Client>,
    next_port: u16,
    sniff: Sniffer,
    report: Report,
    /// The client host is gone: its frames are lost and it is not polled.
    vanished: bool,
}

impl World<'_, '_> {
    /// Deliver the held frames, poll the node and the client host, collect what they sent.
    fn round(&mut self) {
        if debug() {
            for f in &self.wire.to_srv {
                eprintln!("{} -> srv {:?}", self.now, brief(f));
            }
            for f in &self.wire.to_cli {
                eprintln!("{} -> cli {:?}", self.now, brief(f));
            }
        }
        if self.vanished {
            self.wire.to_srv.clear();
            self.wire.to_cli.clear();
        }
        self.wire.deliver();
        self.server.poll(self.now, &mut self.wire.srv_link);
        let sniff = &mut self.sniff;
        self.wire
            .collect_from_server(self.now, |f| sniff.saw_server(f));
        if !self.vanished {
            let sniff = &mut self.sniff;
            net::poll_client(
                &mut self.client_iface,
                &mut self.wire.cli_link,
                &mut self.client_sockets,
                self.now,
            );
            Self::client_reads(&self.clients, &mut self.client_sockets);
            self.wire
                .collect_from_client(self.now, |f| sniff.saw_client(f));
        }
        self.server.check_counters();
        for state in self.server.slot_states() {
            if !self.report.slot_states.contains(&state) {
                self.report.slot_states.push(state);
            }
        }
    }

    fn client_reads(clients: &[Client], sockets: &mut Sockets<'_>) {
        let mut buf = [0u8; 1024];
        for c in clients {
            if c.reading {
                let s = sockets.get_mut::<tcp::Socket>(c.handle);
                while s.can_recv() {
                    if s.recv_slice(&mut buf).unwrap_or(0) == 0 {
                        break;
                    }
                }
            }
        }
    }

    fn client(&mut self, i: u8) -> Option<&mut Client> {
        if self.clients.is_empty() {
            return None;
        }
        let n = self.clients.len();
        self.clients.get_mut(usize::from(i) % n)
    }

    fn connect(&mut self, slot: usize, v6: bool) {
        let Some(c) = self.clients.get_mut(slot % CLIENTS) else {
            return;
        };
        self.next_port = self.next_port.wrapping_add(1).max(1024);
        let socket = self.client_sockets.get_mut::<tcp::Socket>(c.handle);
        socket.abort();
        let remote = IpEndpoint::new(net::server_ip(v6), PORT);
        if socket
            .connect(self.client_iface.context(), remote, self.next_port)
            .is_ok()
        {
            c.port = self.next_port;
            c.v6 = v6;
            c.reading = true;
            c.sent = 0;
        }
    }

    fn inject(&mut self, #[allow(unused_mut)] mut frame: Vec<u8>) {
        // cargo-fuzz builds smoltcp with `--cfg fuzzing`, where it skips every checksum
        // check. Elsewhere (the stable replay) give forged frames valid checksums, so a saved
        // input takes the same paths in both builds.
        #[cfg(not(fuzzing))]
        net::refresh_checksums(&mut frame);
        self.report.forged += 1;
        self.wire.to_srv.push_back(frame);
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Tcp(spec) => {
                let frame = tcp_frame(spec, &self.sniff);
                self.inject(frame);
            }
            Op::Udp(spec) => {
                let frame = udp_frame(spec);
                self.inject(frame);
            }
            Op::Eth {
                kind,
                broadcast,
                body,
            } => {
                let frame = eth_frame(kind, *broadcast, body);
                self.inject(frame);
            }
            Op::Raw(bytes) => {
                let frame = bytes[..bytes.len().min(MAX_FRAME)].to_vec();
                self.inject(frame);
            }
            Op::Mutate {
                pick,
                edits,
                cut,
                refresh,
            } => {
                if self.sniff.recent.is_empty() {
                    return;
                }
                let i = usize::from(*pick) % self.sniff.recent.len();
                let mut frame = self.sniff.recent[i].clone();
                if let Some(cut) = cut {
                    frame.truncate(usize::from(*cut));
                }
                if !frame.is_empty() {
                    for (at, x) in edits {
                        let n = frame.len();
                        frame[usize::from(*at) % n] ^= x;
                    }
                }
                if *refresh {
                    net::refresh_checksums(&mut frame);
                }
                self.inject(frame);
            }
            Op::Connect { slot, v6 } => self.connect(usize::from(*slot), *v6),
            Op::Send { conn, len } => {
                let len = usize::from(*len) % (CLIENT_BUF + 1);
                let Some(c) = self.client(*conn) else {
                    return;
                };
                let (handle, salt) = (c.handle, c.sent);
                let data = net::pattern(len, salt);
                let s = self.client_sockets.get_mut::<tcp::Socket>(handle);
                let n = s.send_slice(&data).unwrap_or(0);
                if let Some(c) = self.client(*conn) {
                    c.sent = c.sent.wrapping_add(n as u32);
                }
            }
            Op::ToggleRead(i) => {
                if let Some(c) = self.client(*i) {
                    c.reading = !c.reading;
                }
            }
            Op::Close(i) => {
                if let Some(c) = self.client(*i) {
                    let h = c.handle;
                    self.client_sockets.get_mut::<tcp::Socket>(h).close();
                }
            }
            Op::Abort(i) => {
                if let Some(c) = self.client(*i) {
                    let h = c.handle;
                    self.client_sockets.get_mut::<tcp::Socket>(h).abort();
                }
            }
            Op::DropFrame { to_server, index } => {
                let q = if *to_server {
                    &mut self.wire.to_srv
                } else {
                    &mut self.wire.to_cli
                };
                if !q.is_empty() {
                    let i = usize::from(*index) % q.len();
                    q.remove(i);
                }
            }
            Op::Duplicate { to_server, index } => {
                let q = if *to_server {
                    &mut self.wire.to_srv
                } else {
                    &mut self.wire.to_cli
                };
                if !q.is_empty() {
                    let i = usize::from(*index) % q.len();
                    let f = q[i].clone();
                    q.insert(i, f);
                }
            }
            Op::Swap { to_server, index } => {
                let q = if *to_server {
                    &mut self.wire.to_srv
                } else {
                    &mut self.wire.to_cli
                };
                if q.len() >= 2 {
                    let i = usize::from(*index) % (q.len() - 1);
                    q.swap(i, i + 1);
                }
            }
            Op::Advance(Tick::Ms(ms)) => {
                self.now += Duration::from_millis(u64::from(*ms));
            }
            Op::Advance(Tick::Secs(s)) => {
                self.now += Duration::from_secs(u64::from(*s));
            }
            Op::Rounds(n) => {
                for _ in 0..(n % 16) {
                    self.now += Duration::from_millis(1);
                    self.round();
                }
            }
        }
    }

    /// Stop the clients (abort, or vanish), then run past every timeout.
    fn settle(&mut self, config: &TcpConfig, keep_alive: bool) {
        if !self.vanished {
            for c in &self.clients {
                self.client_sockets.get_mut::<tcp::Socket>(c.handle).abort();
            }
        }
        let span = config.idle_timeout.unwrap_or_default()
            + config.handshake_timeout.unwrap_or_default()
            + RST_GRACE
            + RST_GRACE
            + Duration::from_secs(2);
        let end = self.now + span;
        let mut rounds = 0;
        while self.now <= end {
            rounds += 1;
            assert!(
                rounds <= SETTLE_ROUNDS,
                "no quiet after {SETTLE_ROUNDS} rounds (keep-alive {keep_alive}): {:?}",
                self.server.slot_states()
            );
            self.round();
            if debug() {
                eprintln!(
                    "settle {} poll_at {:?} client {:?} idle {:?} slots {:?}",
                    self.now,
                    self.server.poll_at(self.now),
                    self.client_iface.poll_at(self.now, &self.client_sockets),
                    (
                        self.wire.srv_link.queued(smolecho::sim::Side::A),
                        self.wire.srv_link.queued(smolecho::sim::Side::B),
                        self.wire.cli_link.queued(smolecho::sim::Side::A),
                        self.wire.cli_link.queued(smolecho::sim::Side::B)
                    ),
                    self.server.slot_states()
                );
            }
            let tick = self.now + Duration::from_millis(1);
            self.now = if !self.wire.is_idle() {
                tick
            } else {
                let mut next = self.server.poll_at(self.now);
                if !self.vanished {
                    let c = self.client_iface.poll_at(self.now, &self.client_sockets);
                    next = match (next, c) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                match next {
                    Some(at) if at > tick => at.min(end + Duration::from_millis(1)),
                    Some(_) => tick,
                    None => end + Duration::from_millis(1),
                }
            };
        }
        self.report.settle_rounds = rounds;
    }
}

/// A one-line description of a frame, for debugging.
pub(crate) fn brief(f: &[u8]) -> String {
    match net::parse_tcp(f) {
        Some(s) => format!(
            "tcp{} {}->{} seq {} ack {:?} {}{}{} win {} len {}",
            if s.v6 { 6 } else { 4 },
            s.src_port,
            s.dst_port,
            s.seq,
            s.ack,
            if s.syn { "S" } else { "" },
            if s.fin { "F" } else { "" },
            if s.rst { "R" } else { "" },
            s.window,
            s.payload.len()
        ),
        None => format!("{} bytes", f.len()),
    }
}

/// Whether `SMOLECHO_FUZZ_DEBUG` is set: then every frame is printed.
pub(crate) fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("SMOLECHO_FUZZ_DEBUG").is_some())
}

/// Run one input; panics when a property fails.
pub fn run(data: &[u8]) -> Report {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return Report::default();
    };
    let config = TcpConfig {
        overflow: if setup.refuse {
            Overflow::Refuse
        } else {
            Overflow::Defer
        },
        idle_timeout: Some(Duration::from_secs(1 + u64::from(setup.idle_secs % 8))),
        handshake_timeout: Some(Duration::from_secs(1 + u64::from(setup.handshake_secs % 4))),
        keep_alive: setup.keep_alive.then(|| Duration::from_secs(1)),
        ack_delay: setup.ack_delay.then(|| Duration::from_millis(10)),
        ..TcpConfig::on_port(PORT)
    };

    let now = Instant::from_secs(1);
    let mut wire = Wire::new();
    let mut store = ServerStore::boxed();
    let mut mem = net::socket_mem(8);
    let server = Server::new(&mut store, &mut mem, config, &mut wire.srv_link, now);

    let mut bufs: Vec<Vec<u8>> = (0..2 * CLIENTS).map(|_| vec![0u8; CLIENT_BUF]).collect();
    let mut cmem = net::socket_mem(CLIENTS);
    let mut client_sockets = Sockets::new(&mut cmem);
    let mut clients = Vec::new();
    let mut bufs_iter = bufs.iter_mut();
    while let (Some(rx), Some(tx)) = (bufs_iter.next(), bufs_iter.next()) {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        );
        socket.set_nagle_enabled(false);
        let handle = client_sockets.add(socket).expect("room for the clients");
        clients.push(Client {
            handle,
            port: 0,
            v6: false,
            reading: true,
            sent: 0,
        });
    }
    let client_iface = net::client_iface(&mut wire.cli_link, now);
    let mut w = World {
        now,
        wire,
        server,
        client_iface,
        client_sockets,
        clients,
        next_port: 40000,
        sniff: Sniffer {
            tracks: HashMap::new(),
            order: Vec::new(),
            recent: Vec::new(),
        },
        report: Report::default(),
        vanished: false,
    };

    // Open the initial connections and let the handshakes finish.
    for (i, v6) in setup.initial.iter().enumerate() {
        if let Some(v6) = v6 {
            w.connect(i, *v6);
        }
    }
    for _ in 0..20 {
        w.now += Duration::from_millis(1);
        w.round();
    }

    let mut ops = 0;
    while ops < MAX_OPS && !u.is_empty() {
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        w.apply(&op);
        w.now += Duration::from_millis(1);
        w.round();
        ops += 1;
    }
    w.report.ops = ops;

    w.vanished = setup.vanish;
    w.settle(&config, setup.keep_alive);
    w.server.check_counters();
    w.server.check_all_listening("after the timeouts");
    w.report.counters = w.server.node.tcp_counters();
    w.report.udp = w.server.node.udp_counters();
    w.report
}
