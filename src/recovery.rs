//! Loss recovery from the peer's SACK blocks, which smoltcp 0.14 does not read.
//!
//! smoltcp retransmits a lost segment early only on three *pure* duplicate ACKs (no payload,
//! same ACK, same window: `socket/tcp.rs`, `process`, the arm that counts
//! `local_rx_dup_acks`); any other segment resets the count. An echo client sends while it
//! receives, so its ACKs ride on data and never count: every segment of the echo lost on the
//! way back waits for smoltcp's retransmission timeout, at least 1 s (`RTTE_MIN_RTO`), and
//! the client's window for our echo fills meanwhile, so both directions stall.
//!
//! The peer's SACK blocks say what it is missing. When a segment from the peer acknowledges
//! `ack` and SACKs at least [`LOST_AFTER_SACKED`] bytes above it (as RFC 6675 declares a
//! segment lost after three segments' worth of SACKed data), the node hands smoltcp
//! [`DUP_ACKS`] copies of that segment's headers without its payload: three pure duplicate
//! ACKs, which start smoltcp's own fast retransmit of the segment at `ack`. Once per
//! acknowledgement number, and again only after [`RETRY_AFTER`] if the retransmission was
//! lost too.

use smoltcp::phy::Medium;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, IpProtocol, TcpPacket, TcpSeqNumber};

use crate::conn::elapsed;

/// SACKed bytes above the acknowledgement that mark its segment lost: three full segments.
pub(crate) const LOST_AFTER_SACKED: u32 = 3 * 1460;

/// Pure duplicate ACKs that start smoltcp's fast retransmit.
pub(crate) const DUP_ACKS: usize = 3;

/// How long a recovery waits for its retransmission before it starts again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The Ethernet header's length.
const ETHERNET_HEADER: usize = 14;

/// The largest header-only copy: Ethernet + IPv4 with options + TCP with options.
const MAX_ACK_FRAME: usize = 14 + 60 + 60;

/// A pure ACK built from a peer's segment, to be handed to the interface.
pub(crate) type DupAck = heapless::Vec<u8, MAX_ACK_FRAME>;

/// What one connection's recovery last did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// The acknowledgement number recovered last, and when.
    last: Option<(u32, Instant)>,
}

impl Recovery {
    pub(crate) const NEW: Self = Self { last: None };

    /// Whether a loss at `ack` should be recovered now; records it when so.
    pub(crate) fn start(&mut self, ack: u32, now: Instant) -> bool {
        match self.last {
            Some((last, at)) if last == ack && elapsed(at, now) < RETRY_AFTER => false,
            _ => {
                self.last = Some((ack, now));
                true
            }
        }
    }
}

/// A segment from a peer that reports a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loss {
    /// Who sent it.
    pub(crate) source: IpEndpoint,
    /// Its acknowledgement number: the first byte the peer is missing.
    pub(crate) ack: u32,
}

/// The loss `frame` reports, if it is a TCP segment to `port` that acknowledges `ack` and
/// SACKs at least [`LOST_AFTER_SACKED`] bytes above it.
pub(crate) fn reported_loss(medium: Medium, frame: &[u8], port: u16) -> Option<Loss> {
    let (source, _, at, len) = tcp_segment(medium, frame)?;
    let tcp = TcpPacket::new_checked(frame.get(at..at.checked_add(len)?)?).ok()?;
    if tcp.dst_port() != port || !tcp.ack() || tcp.syn() || tcp.rst() || tcp.header_len() <= 20 {
        return None;
    }
    let ack = tcp.ack_number();
    let sacked: u32 = tcp
        .selective_ack_ranges()
        .ok()?
        .iter()
        .flatten()
        .filter(|(left, _)| TcpSeqNumber(*left as i32) > ack)
        .map(|(left, right)| right.wrapping_sub(*left))
        .fold(0u32, u32::saturating_add);
    (sacked >= LOST_AFTER_SACKED).then(|| Loss {
        source: IpEndpoint::new(source, tcp.src_port()),
        ack: ack.0 as u32,
    })
}

/// `frame`'s headers without its payload, its sequence number moved past the payload: a pure
/// ACK that smoltcp accepts in its window and counts as a duplicate.
pub(crate) fn dup_ack(medium: Medium, frame: &[u8]) -> Option<DupAck> {
    let (source, destination, at, len) = tcp_segment(medium, frame)?;
    let tcp = TcpPacket::new_checked(frame.get(at..at.checked_add(len)?)?).ok()?;
    let tcp_header = usize::from(tcp.header_len());
    let payload = len.checked_sub(tcp_header)?;
    let next_seq = TcpSeqNumber(
        tcp.seq_number()
            .0
            .wrapping_add(i32::try_from(payload).ok()?),
    );
    let mut copy = DupAck::from_slice(frame.get(..at.checked_add(tcp_header)?)?).ok()?;
    let (ip, segment) = copy.split_at_mut_checked(at)?;
    let ip = ip.get_mut(ETHERNET_HEADER..)?;
    match destination {
        IpAddress::Ipv4(_) => {
            // At least the 20-byte header: it parsed as IPv4 above.
            let len = u16::try_from(ip.len().checked_add(tcp_header)?).ok()?;
            let mut packet = smoltcp::wire::Ipv4Packet::new_unchecked(&mut *ip);
            packet.set_total_len(len);
            packet.fill_checksum();
        }
        #[cfg(feature = "proto-ipv6")]
        IpAddress::Ipv6(_) => {
            // The 40-byte header: it parsed as IPv6 above.
            let mut packet = smoltcp::wire::Ipv6Packet::new_unchecked(&mut *ip);
            packet.set_payload_len(u16::try_from(tcp_header).ok()?);
        }
    }
    let mut tcp = TcpPacket::new_unchecked(segment);
    tcp.set_seq_number(next_seq);
    tcp.set_psh(false);
    tcp.set_fin(false);
    tcp.fill_checksum(&source, &destination);
    Some(copy)
}

/// The source and destination addresses of an unfragmented TCP packet in an Ethernet frame,
/// and where in the frame its segment starts and how long it is.
fn tcp_segment(medium: Medium, frame: &[u8]) -> Option<(IpAddress, IpAddress, usize, usize)> {
    if medium != Medium::Ethernet {
        return None;
    }
    let eth = smoltcp::wire::EthernetFrame::new_checked(frame).ok()?;
    let packet = match eth.ethertype() {
        smoltcp::wire::EthernetProtocol::Ipv4 => frame.get(ETHERNET_HEADER..)?,
        #[cfg(feature = "proto-ipv6")]
        smoltcp::wire::EthernetProtocol::Ipv6 => frame.get(ETHERNET_HEADER..)?,
        _ => return None,
    };
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = smoltcp::wire::Ipv4Packet::new_checked(packet).ok()?;
            if ip.more_frags() || ip.frag_offset() != 0 || ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let header = usize::from(ip.header_len());
            let len = usize::from(ip.total_len()).checked_sub(header)?;
            Some((
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                ETHERNET_HEADER.checked_add(header)?,
                len,
            ))
        }
        #[cfg(feature = "proto-ipv6")]
        Some(6) => {
            let ip = smoltcp::wire::Ipv6Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            Some((
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ETHERNET_HEADER.checked_add(40)?,
                usize::from(ip.payload_len()),
            ))
        }
        _ => None,
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::frames::{self, Peer};
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpControl, TcpRepr};

    const PORT: u16 = 7;

    fn segment(ack: u32, sack: [Option<(u32, u32)>; 3], payload: &[u8]) -> frames::Frame {
        let (client, server) = (Peer::client_v4(40000), Peer::server_v4(PORT));
        let repr = TcpRepr {
            src_port: client.port,
            dst_port: server.port,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(5000),
            ack_number: Some(TcpSeqNumber(ack as i32)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: sack,
            timestamp: None,
            payload,
        };
        frames::tcp_repr(&client, &server, &repr)
    }

    #[test]
    fn three_segments_sacked_above_the_ack_report_a_loss() {
        let lost = segment(1000, [Some((2460, 2460 + 3 * 1460)), None, None], b"data");
        let loss = reported_loss(Medium::Ethernet, &lost, PORT).expect("a loss");
        assert_eq!(loss.ack, 1000);
        assert_eq!(loss.source, Peer::client_v4(40000).endpoint());
        let reordered = segment(1000, [Some((2460, 2460 + 1460)), None, None], b"data");
        assert_eq!(
            reported_loss(Medium::Ethernet, &reordered, PORT),
            None,
            "one segment: reordering"
        );
        let plain = segment(1000, [None; 3], b"data");
        assert_eq!(reported_loss(Medium::Ethernet, &plain, PORT), None);
        assert_eq!(
            reported_loss(Medium::Ethernet, &lost, PORT + 1),
            None,
            "another port"
        );
        for cut in 0..lost.len() {
            let _ = reported_loss(Medium::Ethernet, &lost[..cut], PORT);
            let _ = dup_ack(Medium::Ethernet, &lost[..cut]);
        }
    }

    #[test]
    fn the_duplicate_ack_is_the_headers_without_the_payload_past_it() {
        let lost = segment(1000, [Some((2460, 2460 + 3 * 1460)), None, None], b"data");
        let ack = dup_ack(Medium::Ethernet, &lost).expect("a copy");
        let eth = EthernetFrame::new_checked(&ack[..]).expect("ethernet");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        assert!(ip.verify_checksum());
        let caps = ChecksumCapabilities::default();
        let (src, dst) = (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        );
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        let repr = TcpRepr::parse(&tcp, &src, &dst, &caps).expect("a valid segment");
        assert!(repr.payload.is_empty());
        assert_eq!(repr.seq_number, TcpSeqNumber(5004), "past the payload");
        assert_eq!(repr.ack_number, Some(TcpSeqNumber(1000)));
        assert_eq!(
            repr.window_len, 1000,
            "the same window: not a window update"
        );
        assert_eq!(repr.control, TcpControl::None);
    }

    #[test]
    fn a_loss_is_recovered_once_then_again_only_after_the_retry_time() {
        let mut r = Recovery::NEW;
        let t = Instant::from_millis(1000);
        assert!(r.start(7, t));
        assert!(!r.start(7, t + Duration::from_millis(100)));
        assert!(r.start(7, t + RETRY_AFTER));
        assert!(r.start(8, t + RETRY_AFTER), "the next hole at once");
    }
}
