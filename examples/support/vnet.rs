//! The frame work of the offload TAP device ([`super::vnet_tap`]), as pure functions: the
//! `virtio_net_hdr` that precedes every frame on a TAP opened with `IFF_VNET_HDR`, the header
//! to write for a frame smoltcp built, the checks a received frame must pass, and the TCP
//! MSS each peer announced. No I/O and no `unsafe` here, so `tests/vnet_frames.rs` can test
//! all of it without root.
//!
//! Layout (Linux `include/uapi/linux/virtio_net.h`, little-endian as set by `TUNSETVNETLE`):
//! flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16.
//! Offsets (`hdr_len`, `csum_start`) count from the start of the Ethernet frame.

use smolecho::smoltcp::wire::checksum;
use smolecho::smoltcp::wire::{IpProtocol, Ipv4Address, Ipv6Address};

/// Bytes of the header (`struct virtio_net_hdr`, set with `TUNSETVNETHDRSZ`).
pub const HEADER_LEN: usize = 10;
/// Ethernet header bytes (no 802.1Q tag: smoltcp neither sends nor parses them).
pub const ETHERNET_HEADER: usize = 14;
/// `flags`: the transport checksum is partial (the pseudo-header sum sits in the checksum
/// field) and is to be completed over `csum_start..` into `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the kernel already verified the checksums.
pub const F_DATA_VALID: u8 = 2;
/// `gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
/// The TCP checksum's offset in the TCP header; the UDP one's.
pub const TCP_CSUM_OFFSET: u16 = 16;
pub const UDP_CSUM_OFFSET: u16 = 6;
/// The MSS a TCP peer that announced none accepts (RFC 9293 3.7.1, RFC 8200 8.3).
pub const DEFAULT_MSS_V4: u16 = 536;
pub const DEFAULT_MSS_V6: u16 = 1220;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_SYN: u8 = 0x02;

/// One `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// `None` when `bytes` is shorter than a header.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..HEADER_LEN)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }
}

/// Addresses of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addrs {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// A TCP or UDP packet inside an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub addrs: Addrs,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Offset of the transport header in the frame.
    pub start: usize,
    /// Transport header and payload, as the IP header gives it.
    pub len: usize,
}

impl Transport {
    /// The pseudo-header sum (RFC 1071, not complemented) for `len` transport bytes.
    fn pseudo_sum(&self, len: usize) -> u16 {
        let proto = IpProtocol::from(self.proto);
        let len = len as u32;
        match self.addrs {
            Addrs::V4(s, d) => checksum::pseudo_header_v4(
                &Ipv4Address::from_octets(s),
                &Ipv4Address::from_octets(d),
                proto,
                len,
            ),
            Addrs::V6(s, d) => checksum::pseudo_header_v6(
                &Ipv6Address::from_octets(s),
                &Ipv6Address::from_octets(d),
                proto,
                len,
            ),
        }
    }

    /// The IP header's length (IPv6: with its extension headers).
    fn ip_header_len(&self) -> usize {
        self.start - ETHERNET_HEADER
    }
}

/// What a frame is, as far as checksums go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// TCP or UDP: its checksum is ours to check once smoltcp no longer does.
    Transport(Transport),
    /// A fragment of a TCP or UDP packet (or of something unknown): its transport checksum
    /// cannot be checked per fragment.
    Fragment,
    /// An IP header whose lengths do not fit the frame.
    Malformed,
    /// Anything else (ARP, ICMP, other protocols): smoltcp checks what it handles itself.
    Other,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Find the transport packet of an Ethernet frame. IPv6 extension headers (hop-by-hop,
/// routing, destination options) are walked, so one cannot hide a transport header from
/// the check.
pub fn parse(frame: &[u8]) -> Parsed {
    match be16(frame, 12) {
        Some(ETHERTYPE_IPV4) => parse_ipv4(frame),
        Some(ETHERTYPE_IPV6) => parse_ipv6(frame),
        _ => Parsed::Other,
    }
}

fn parse_ipv4(frame: &[u8]) -> Parsed {
    let ip = &frame[ETHERNET_HEADER..];
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Parsed::Malformed;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || total < ihl || total > ip.len() {
        return Parsed::Malformed;
    }
    let more_fragments = ip[6] & 0x20 != 0;
    let offset = u16::from_be_bytes([ip[6] & 0x1f, ip[7]]);
    if more_fragments || offset != 0 {
        return Parsed::Fragment;
    }
    let proto = ip[9];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Parsed::Other;
    }
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let dst = [ip[16], ip[17], ip[18], ip[19]];
    Parsed::Transport(Transport {
        addrs: Addrs::V4(src, dst),
        proto,
        start: ETHERNET_HEADER + ihl,
        len: total - ihl,
    })
}

fn parse_ipv6(frame: &[u8]) -> Parsed {
    let ip = &frame[ETHERNET_HEADER..];
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if 40 + payload > ip.len() {
        return Parsed::Malformed;
    }
    let mut next = ip[6];
    let mut at = 40;
    let end = 40 + payload;
    loop {
        match next {
            // Hop-by-hop, routing, destination options: next header, length in 8-byte
            // units after the first 8.
            0 | 43 | 60 => {
                let (Some(&n), Some(&len)) = (ip.get(at), ip.get(at + 1)) else {
                    return Parsed::Malformed;
                };
                at += 8 + usize::from(len) * 8;
                if at > end {
                    return Parsed::Malformed;
                }
                next = n;
            }
            44 => return Parsed::Fragment,
            PROTO_TCP | PROTO_UDP => break,
            _ => return Parsed::Other,
        }
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    Parsed::Transport(Transport {
        addrs: Addrs::V6(src, dst),
        proto: next,
        start: ETHERNET_HEADER + at,
        len: end - at,
    })
}

/// Why a received frame is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDrop {
    /// The TCP or UDP checksum is wrong.
    BadChecksum,
    /// Lengths that do not fit, or a fragment whose checksum cannot be checked.
    Unverifiable,
}

/// Check a received frame whose transport checksums smoltcp no longer verifies. Frames the
/// kernel marked `NEEDS_CSUM` (built in its memory, checksum left partial: nothing to check)
/// or `DATA_VALID` (checked already) pass; every other TCP or UDP packet must carry a
/// correct checksum. IPv4 header and ICMP checksums are left to smoltcp, which still checks
/// them.
pub fn check_received(header: &VnetHeader, frame: &[u8]) -> Result<(), RxDrop> {
    if header.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0 {
        return Ok(());
    }
    match parse(frame) {
        Parsed::Transport(t) => transport_checksum_ok(frame, &t)
            .then_some(())
            .ok_or(RxDrop::BadChecksum),
        Parsed::Fragment | Parsed::Malformed => Err(RxDrop::Unverifiable),
        Parsed::Other => Ok(()),
    }
}

/// Whether the TCP or UDP checksum of `t` is right.
pub fn transport_checksum_ok(frame: &[u8], t: &Transport) -> bool {
    let Some(segment) = frame.get(t.start..t.start + t.len) else {
        return false;
    };
    let covered = if t.proto == PROTO_UDP {
        if segment.len() < 8 {
            return false;
        }
        // UDP covers its own length field's bytes (padding after them is not part of it).
        let udp_len = usize::from(u16::from_be_bytes([segment[4], segment[5]]));
        if udp_len < 8 || udp_len > segment.len() {
            return false;
        }
        if segment[6] == 0 && segment[7] == 0 {
            // No checksum: allowed over IPv4 (RFC 768), never over IPv6 (RFC 8200 8.1).
            return matches!(t.addrs, Addrs::V4(..));
        }
        &segment[..udp_len]
    } else {
        if segment.len() < 20 {
            return false;
        }
        segment
    };
    checksum::combine(&[t.pseudo_sum(covered.len()), checksum::data(covered)]) == !0
}

/// Complete a partial checksum as the kernel does for `NEEDS_CSUM`: sum `start..` (the
/// field holds the pseudo-header sum) and store the complement at `start + offset`.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start + offset;
    if at + 2 > frame.len() || start > frame.len() {
        return false;
    }
    let sum = !checksum::data(&frame[start..]);
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

/// Why a frame smoltcp built cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxDrop {
    /// Larger than the link takes, and not TCP that the kernel can segment.
    Oversize,
}

/// The header for a frame smoltcp built with TCP checksums offloaded, and the frame made
/// ready for it: a TCP packet gets its pseudo-header sum in the checksum field and
/// `NEEDS_CSUM`; one with more payload than a segment of the link (`link_ip_mtu`) carries, or
/// than the segment size smoltcp asked for (`requested`, its `segmentation_offload_size`),
/// is handed to the kernel to segment (`GSO_TCPV4`/`GSO_TCPV6`). `peer_mss` is the MSS the
/// peer announced, if known; it bounds the segments when smoltcp gave no size (it gives none
/// for IPv6: smoltcp 0.14 drops the metadata there).
pub fn transmit_header(
    frame: &mut [u8],
    link_ip_mtu: usize,
    requested: Option<u16>,
    peer_mss: Option<u16>,
) -> Result<VnetHeader, TxDrop> {
    let fits_link = frame.len() <= ETHERNET_HEADER + link_ip_mtu;
    let t = match parse(frame) {
        Parsed::Transport(t) if t.proto == PROTO_TCP => t,
        _ if fits_link => return Ok(VnetHeader::default()),
        _ => return Err(TxDrop::Oversize),
    };
    let Some(&offset_byte) = frame.get(t.start + 12) else {
        return Err(TxDrop::Oversize);
    };
    let tcp_header = usize::from(offset_byte >> 4) * 4;
    if tcp_header < 20 || tcp_header > t.len {
        return if fits_link {
            Ok(VnetHeader::default())
        } else {
            Err(TxDrop::Oversize)
        };
    }
    let csum_at = t.start + usize::from(TCP_CSUM_OFFSET);
    frame[csum_at..csum_at + 2].copy_from_slice(&t.pseudo_sum(t.len).to_be_bytes());
    let mut header = VnetHeader {
        flags: F_NEEDS_CSUM,
        csum_start: t.start as u16,
        csum_offset: TCP_CSUM_OFFSET,
        ..VnetHeader::default()
    };
    let payload = t.len - tcp_header;
    let options = tcp_header - 20;
    // The largest payload one segment may carry on this link.
    let link_limit = link_ip_mtu.saturating_sub(t.ip_header_len() + tcp_header);
    let (v6, default_mss) = match t.addrs {
        Addrs::V4(..) => (false, DEFAULT_MSS_V4),
        Addrs::V6(..) => (true, DEFAULT_MSS_V6),
    };
    let wanted = match requested {
        Some(size) => usize::from(size),
        None => usize::from(peer_mss.unwrap_or(default_mss)).saturating_sub(options),
    };
    if requested.is_none() && payload <= link_limit {
        // An ordinary segment: smoltcp sized it for the link and the peer.
        return Ok(header);
    }
    let segment = wanted.min(link_limit);
    if payload <= segment {
        return Ok(header);
    }
    if segment == 0 || segment > usize::from(u16::MAX) {
        return Err(TxDrop::Oversize);
    }
    header.gso_type = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
    header.gso_size = segment as u16;
    header.hdr_len = (t.start + tcp_header) as u16;
    Ok(header)
}

/// The peers' announced TCP MSS, learnt from the SYNs they send, per connection (a small
/// table: the oldest entry makes room).
#[derive(Debug, Clone)]
pub struct PeerMss {
    entries: Vec<(Flow, u16)>,
    next: usize,
}

/// A TCP connection as seen from this side: the peer's address and port, our port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flow {
    peer: [u8; 16],
    peer_port: u16,
    local_port: u16,
}

/// Connections whose MSS (and advertised window) are remembered; beyond that the oldest entry
/// makes room (the default MSS applies, the window is no longer followed).
const FOLLOWED_FLOWS: usize = 256;

impl Default for PeerMss {
    fn default() -> Self {
        Self {
            entries: Vec::with_capacity(FOLLOWED_FLOWS),
            next: 0,
        }
    }
}

fn flow_of(frame: &[u8], t: &Transport, incoming: bool) -> Option<Flow> {
    let (src, dst) = match t.addrs {
        Addrs::V4(s, d) => {
            let mut s6 = [0u8; 16];
            let mut d6 = [0u8; 16];
            s6[12..].copy_from_slice(&s);
            d6[12..].copy_from_slice(&d);
            (s6, d6)
        }
        Addrs::V6(s, d) => (s, d),
    };
    let src_port = be16(frame, t.start)?;
    let dst_port = be16(frame, t.start + 2)?;
    Some(if incoming {
        Flow {
            peer: src,
            peer_port: src_port,
            local_port: dst_port,
        }
    } else {
        Flow {
            peer: dst,
            peer_port: dst_port,
            local_port: src_port,
        }
    })
}

/// The MSS option of a TCP header, if any.
fn mss_option(tcp: &[u8]) -> Option<u16> {
    let value = tcp_option(tcp, 2, 4)?;
    Some(u16::from_be_bytes([*value.first()?, *value.get(1)?]))
}

/// The value of the TCP option `kind` of total length `len` in a TCP header, if any.
fn tcp_option(tcp: &[u8], kind: u8, len: usize) -> Option<&[u8]> {
    let header = usize::from(*tcp.get(12)? >> 4) * 4;
    let mut options = tcp.get(20..header)?;
    while let Some(&this) = options.first() {
        match this {
            0 => break,
            1 => options = &options[1..],
            _ => {
                let this_len = usize::from(*options.get(1)?);
                if this_len < 2 || this_len > options.len() {
                    return None;
                }
                if this == kind && this_len == len {
                    return options.get(2..len);
                }
                options = &options[this_len..];
            }
        }
    }
    None
}

impl PeerMss {
    /// Remember the MSS of a received SYN (or SYN-ACK).
    pub fn learn(&mut self, frame: &[u8]) {
        let Parsed::Transport(t) = parse(frame) else {
            return;
        };
        if t.proto != PROTO_TCP || frame.get(t.start + 13).is_none_or(|f| f & TCP_SYN == 0) {
            return;
        }
        let (Some(flow), Some(tcp)) = (
            flow_of(frame, &t, true),
            frame.get(t.start..t.start + t.len),
        ) else {
            return;
        };
        let Some(mss) = mss_option(tcp) else {
            return;
        };
        if let Some(entry) = self.entries.iter_mut().find(|(f, _)| *f == flow) {
            entry.1 = mss;
        } else if self.entries.len() < FOLLOWED_FLOWS {
            self.entries.push((flow, mss));
        } else {
            self.entries[self.next] = (flow, mss);
            self.next = (self.next + 1) % FOLLOWED_FLOWS;
        }
    }

    /// The MSS the peer of an outgoing TCP frame announced.
    pub fn of_outgoing(&self, frame: &[u8]) -> Option<u16> {
        let Parsed::Transport(t) = parse(frame) else {
            return None;
        };
        let flow = flow_of(frame, &t, false)?;
        self.entries
            .iter()
            .find(|(f, _)| *f == flow)
            .map(|&(_, mss)| mss)
    }
}

/// What smoltcp last advertised on each connection (the ACK number and window of the last
/// segment it built, and its window scale), learnt from the frames it sends, so that the
/// peer's pure ACKs from just past that window still reach smoltcp's ACK processing.
///
/// Why: smoltcp 0.14 rounds its advertised window down to its scale (`window >> shift`), so
/// the right edge it advertises can move left by up to `2^shift - 1` bytes. Linux, having
/// sent up to the older edge, then stamps its pure ACKs with that sequence number (it does so
/// while the overshoot is below its own window scale), and smoltcp drops every such segment
/// whole, ACK and window update included (RFC 9293 3.10.7.4 says to process them). In an
/// echo whose two directions are both blocked (smoltcp's receive buffer full because the
/// peer's window is closed) the peer's window updates are then all lost and the connection
/// stalls for good. Moving such an ACK's sequence number back to the advertised edge makes
/// it acceptable without changing what it says (no data, the same ACK and window): smoltcp
/// has by then taken everything up to its edge and drops the rest, so its window is closed
/// and starts there. An ACK at the edge itself is left alone: smoltcp takes it when it has
/// all data up to the edge, and may not have it yet (its ACK can lag what it took).
#[derive(Debug, Clone)]
pub struct AdvertisedWindows {
    entries: Vec<(Flow, Advertised)>,
    next: usize,
    /// Where the last lookup found its connection: a bulk echo finds it there at once.
    hint: usize,
}

/// The last ACK number and raw window field smoltcp sent on a connection, and the scale it
/// announced in its SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Advertised {
    ack: u32,
    window: u16,
    shift: u8,
}

/// How far past smoltcp's advertised right edge a pure ACK may start and still be moved back
/// (exclusive):
/// Linux sends from past the edge only while the overshoot is below its own window scale
/// (at most 2^14); anything farther is left for smoltcp to refuse.
const BEYOND_EDGE_LIMIT: u32 = 1 << 14;

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

impl Default for AdvertisedWindows {
    fn default() -> Self {
        Self {
            entries: Vec::with_capacity(FOLLOWED_FLOWS),
            next: 0,
            hint: 0,
        }
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The window scale option of a TCP header, if any.
fn window_scale_option(tcp: &[u8]) -> Option<u8> {
    tcp_option(tcp, 3, 3)?.first().copied()
}

impl AdvertisedWindows {
    /// The entry of `flow`, trying the last one found first.
    fn find(&mut self, flow: &Flow) -> Option<usize> {
        if self.entries.get(self.hint).is_some_and(|(f, _)| f == flow) {
            return Some(self.hint);
        }
        let i = self.entries.iter().position(|(f, _)| f == flow)?;
        self.hint = i;
        Some(i)
    }

    /// Note what a TCP frame smoltcp built advertises. A SYN gives the connection's scale
    /// (none announced: 0, as smoltcp then scales nothing); later segments the ACK number
    /// and window; its FIN or RST ends the entry. Connections whose SYN was not seen are not
    /// followed.
    pub fn sent(&mut self, frame: &[u8]) {
        let Parsed::Transport(t) = parse(frame) else {
            return;
        };
        if t.proto != PROTO_TCP {
            return;
        }
        let (Some(flow), Some(tcp)) = (
            flow_of(frame, &t, false),
            frame.get(t.start..t.start + t.len),
        ) else {
            return;
        };
        let (Some(&flags), Some(ack), Some(window)) = (tcp.get(13), be32(tcp, 8), be16(tcp, 14))
        else {
            return;
        };
        let found = self.find(&flow);
        if flags & (TCP_FIN | TCP_RST) != 0 {
            // smoltcp ends the connection: nothing of it is worth rescuing any more.
            if let Some(i) = found {
                self.entries.swap_remove(i);
            }
            return;
        }
        if flags & TCP_SYN != 0 {
            let shift = window_scale_option(tcp).unwrap_or(0).min(14);
            // A SYN's window is never scaled; the first ACK after it sets the real one.
            let entry = Advertised {
                ack,
                window: 0,
                shift,
            };
            match found {
                Some(i) => self.entries[i].1 = entry,
                None if self.entries.len() < FOLLOWED_FLOWS => self.entries.push((flow, entry)),
                None => {
                    self.entries[self.next] = (flow, entry);
                    self.next = (self.next + 1) % FOLLOWED_FLOWS;
                }
            }
        } else if let (Some(i), true) = (found, flags & TCP_ACK != 0) {
            let entry = &mut self.entries[i].1;
            entry.ack = ack;
            entry.window = window;
        }
    }

    /// Move a received pure ACK that starts just past smoltcp's advertised right edge (where
    /// smoltcp would drop it whole) back to that edge (and note a peer's SYN that offers no
    /// window scaling). `partial`: the
    /// frame's checksum field holds only the pseudo-header sum (`NEEDS_CSUM`), which the
    /// sequence number is not part of; otherwise the checksum is updated with it (RFC 1624),
    /// so captures stay valid. Returns whether the frame was changed.
    pub fn rescue_ack(&mut self, frame: &mut [u8], partial: bool) -> bool {
        let Parsed::Transport(t) = parse(frame) else {
            return false;
        };
        if t.proto != PROTO_TCP {
            return false;
        }
        let Some(&offset_byte) = frame.get(t.start + 12) else {
            return false;
        };
        let tcp_header = usize::from(offset_byte >> 4) * 4;
        let Some(&flags) = frame.get(t.start + 13) else {
            return false;
        };
        if flags & TCP_SYN != 0 {
            // smoltcp scales its window only if the peer's SYN offers scaling too: a peer's
            // SYN-ACK without the option (smoltcp connecting) leaves it unscaled.
            let no_scale = frame
                .get(t.start..t.start + t.len)
                .is_some_and(|tcp| window_scale_option(tcp).is_none());
            if let (true, Some(flow)) = (no_scale, flow_of(frame, &t, true))
                && let Some(i) = self.find(&flow)
            {
                self.entries[i].1.shift = 0;
            }
            return false;
        }
        // Only a pure ACK: no data, no SYN, FIN or RST.
        if tcp_header < 20
            || tcp_header != t.len
            || flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0
            || flags & TCP_ACK == 0
        {
            return false;
        }
        let (Some(flow), Some(seq)) = (flow_of(frame, &t, true), be32(frame, t.start + 4)) else {
            return false;
        };
        let Some(i) = self.find(&flow) else {
            return false;
        };
        let sent = self.entries[i].1;
        let edge = sent.ack.wrapping_add(u32::from(sent.window) << sent.shift);
        let past = seq.wrapping_sub(edge);
        if past == 0 || past >= BEYOND_EDGE_LIMIT {
            return false;
        }
        let at = t.start + 4;
        frame[at..at + 4].copy_from_slice(&edge.to_be_bytes());
        if !partial {
            let csum_at = t.start + usize::from(TCP_CSUM_OFFSET);
            let old = u16::from_be_bytes([frame[csum_at], frame[csum_at + 1]]);
            let new = update_checksum(old, seq, edge);
            frame[csum_at..csum_at + 2].copy_from_slice(&new.to_be_bytes());
        }
        true
    }
}

/// A ones' complement checksum after a 32-bit field changed from `old` to `new`
/// (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m'), per 16-bit word).
pub fn update_checksum(checksum: u16, old: u32, new: u32) -> u16 {
    let mut acc = u32::from(!checksum);
    for (o, n) in [(old >> 16, new >> 16), (old & 0xffff, new & 0xffff)] {
        acc += u32::from(!(o as u16)) + n;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}
