//! The peer's TCP segments, reshaped where smoltcp 0.14 would lose data or time on them.
//!
//! **Stale acknowledgements.** smoltcp drops a segment whose ACK number is below SND.UNA
//! *whole, data included* (`socket/tcp.rs`, `process`: "duplicate ACK ({} not in {}...{})"
//! returns before the payload is looked at), where RFC 9293 (3.10.7.4) only ignores the ACK.
//! An echo client's data segments carry ever newer ACKs, because it receives the echo
//! meanwhile, so on a link that reorders, a segment overtaken by a later one arrives with an
//! older ACK than smoltcp has seen and is thrown away. Its sender retransmits it at the
//! receive point with backoff, and when a newer segment overtakes the retransmission too, the
//! stream stalls for seconds. Each slot remembers the newest ACK and window its peer sent; a
//! data segment with an older ACK is handed to smoltcp with the newest ones instead (ACKs are
//! cumulative: the older value says nothing the newer did not).
//!
//! **Loss recovery from SACK blocks.** smoltcp retransmits a lost segment early only on three
//! *pure* duplicate ACKs (no payload, same ACK, same window: `process`, the arm that counts
//! `local_rx_dup_acks`); any other segment resets the count. An echo client's ACKs ride on
//! data and never count: every segment of the echo lost on the way back waits for smoltcp's
//! retransmission timeout, at least 1 s (`RTTE_MIN_RTO`), and the client's window for our
//! echo fills meanwhile, so both directions stall. When a segment from the peer acknowledges
//! `ack` and SACKs at least [`LOST_AFTER_SACKED`] bytes above it (as RFC 6675 declares a
//! segment lost after three segments' worth of SACKed data), the node hands smoltcp
//! [`DUP_ACKS`] copies of that segment's headers without its payload: three pure duplicate
//! ACKs, which start smoltcp's own fast retransmit of the segment at `ack`. Once per
//! acknowledgement number, and again only after [`RETRY_AFTER`] if the retransmission was
//! lost too.

#[cfg(feature = "recovery")]
use smoltcp::time::Duration;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, TcpPacket, TcpSeqNumber};

#[cfg(feature = "recovery")]
use crate::conn::elapsed;
use crate::wire::TcpInFrame;

/// SACKed bytes above the acknowledgement that mark its segment lost: three full segments.
pub(crate) const LOST_AFTER_SACKED: u32 = 3 * 1460;

/// Pure duplicate ACKs that start smoltcp's fast retransmit.
pub(crate) const DUP_ACKS: usize = 3;

/// How long a recovery waits for its retransmission before it starts again.
#[cfg(feature = "recovery")]
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The largest header-only copy: Ethernet + IPv4 with options + TCP with options.
const MAX_ACK_FRAME: usize = 14 + 60 + 60;

/// A pure ACK built from a peer's segment, to be handed to the interface.
pub(crate) type DupAck = heapless::Vec<u8, MAX_ACK_FRAME>;

/// What one connection's recovery knows of its peer.
#[cfg(feature = "recovery")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// The acknowledgement number recovered last, and when.
    last: Option<(u32, Instant)>,
    /// The newest ACK number and window field the peer sent in two segments: a corrupted
    /// segment (which smoltcp will drop) cannot make up a value that two of them agree on.
    confirmed: Option<(u32, u16)>,
    /// The last ACK number and window seen once.
    candidate: Option<(u32, u16)>,
}

#[cfg(feature = "recovery")]
impl Recovery {
    pub(crate) const NEW: Self = Self {
        last: None,
        confirmed: None,
        candidate: None,
    };

    /// Note the ACK and window of a segment from the peer. Returns the newest ones instead
    /// when the segment's are older and it carries data (see the [module docs](self)).
    ///
    /// A new ACK is trusted when two segments agree on it, or at once from a pure ACK whose
    /// checksum `verified` confirms (cheap: headers only).
    #[inline]
    pub(crate) fn freshen(
        &mut self,
        segment: &Segment,
        verified: impl FnOnce() -> bool,
    ) -> Option<(u32, u16)> {
        if let Some((ack, window)) = self.confirmed {
            if seq_before(segment.ack, ack) {
                return (segment.payload > 0).then_some((ack, window));
            }
            if (segment.ack, segment.window) == (ack, window) {
                return None;
            }
        }
        let seen = (segment.ack, segment.window);
        if self.candidate == Some(seen) || (segment.payload == 0 && verified()) {
            self.confirmed = Some(seen);
        } else {
            self.candidate = Some(seen);
        }
        None
    }

    /// Whether a loss at `ack` should be recovered now; records it when so. A hole the link
    /// only reordered costs one needless retransmission; waiting to tell the two apart
    /// would cost more, as the echo's window shuts behind a real loss and no further segment
    /// arrives to confirm it.
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

/// Without the `recovery` feature a connection keeps no recovery state: a zero-sized stand-in
/// that never rewrites a segment nor starts a recovery (the node never asks it either).
#[cfg(not(feature = "recovery"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovery;

#[cfg(not(feature = "recovery"))]
impl Recovery {
    pub(crate) const NEW: Self = Self;

    pub(crate) fn freshen(
        &mut self,
        _segment: &Segment,
        _verified: impl FnOnce() -> bool,
    ) -> Option<(u32, u16)> {
        None
    }

    pub(crate) fn start(&mut self, _ack: u32, _now: Instant) -> bool {
        false
    }
}

/// What the node needs to know of one acknowledging TCP segment from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Its acknowledgement number.
    pub(crate) ack: u32,
    /// Its window field, as sent (scaled).
    pub(crate) window: u16,
    /// Payload bytes.
    pub(crate) payload: usize,
    /// It SACKs at least [`LOST_AFTER_SACKED`] bytes above `ack`: the peer lost `ack`.
    pub(crate) reports_loss: bool,
}

/// `frame` as a [`Segment`], if it is an acknowledging TCP segment to `port` (not a SYN nor
/// an RST).
#[inline]
pub(crate) fn inspect(at: &TcpInFrame, frame: &[u8], port: u16) -> Option<Segment> {
    let ack = at.ack?;
    if at.dst_port != port || at.syn || at.rst {
        return None;
    }
    // Options beyond 20 bytes: only then can there be SACK blocks.
    let reports_loss = at.header_len > 20
        && at
            .segment(frame)?
            .selective_ack_ranges()
            .ok()?
            .iter()
            .flatten()
            .filter(|(left, _)| seq_before(ack, *left))
            .map(|(left, right)| right.wrapping_sub(*left))
            .fold(0u32, u32::saturating_add)
            >= LOST_AFTER_SACKED;
    Some(Segment {
        ack,
        window: at.window,
        payload: at.len.checked_sub(usize::from(at.header_len))?,
        reports_loss,
    })
}

/// Whether sequence number `a` comes before `b` (modulo 2^32).
fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The largest frame [`with_ack`] rewrites: a full Ethernet frame.
const MAX_REWRITTEN: usize = 1514;

/// A copy of a frame with another ACK and window.
pub(crate) type Rewritten = heapless::Vec<u8, MAX_REWRITTEN>;

/// A copy of `frame`, a TCP segment, with acknowledgement `ack` and window `window` (`None`
/// for a frame larger than a full Ethernet frame). The checksum is updated for the changed
/// fields only (RFC 1624), so a segment that arrived corrupted stays corrupted and smoltcp
/// drops it as it would have.
pub(crate) fn with_ack(at: &TcpInFrame, frame: &[u8], ack: u32, window: u16) -> Option<Rewritten> {
    let mut copy = Rewritten::from_slice(frame).ok()?;
    let segment = copy.get_mut(at.at..at.at.checked_add(at.len)?)?;
    let mut tcp = TcpPacket::new_checked(segment).ok()?;
    let old_ack = tcp.ack_number().0 as u32;
    let old_window = tcp.window_len();
    let mut sum = u32::from(!tcp.checksum());
    for (old, new) in [
        ((old_ack >> 16) as u16, (ack >> 16) as u16),
        (old_ack as u16, ack as u16),
        (old_window, window),
    ] {
        sum = sum
            .wrapping_add(u32::from(!old))
            .wrapping_add(u32::from(new));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff).wrapping_add(sum >> 16);
    }
    tcp.set_ack_number(TcpSeqNumber(ack as i32));
    tcp.set_window_len(window);
    tcp.set_checksum(!(sum as u16));
    Some(copy)
}

/// Move the duplicate ACK `ack` one sequence number on (its checksum filled in again).
/// Returns whether it could.
pub(crate) fn next_seq(medium: smoltcp::phy::Medium, ack: &mut DupAck) -> bool {
    let Some(at) = crate::wire::tcp_in_frame(medium, ack) else {
        return false;
    };
    let (Some(source), Some(destination)) = (at.source(ack), at.destination(ack)) else {
        return false;
    };
    let Some(segment) = at
        .at
        .checked_add(at.len)
        .and_then(|end| ack.get_mut(at.at..end))
    else {
        return false;
    };
    let Ok(mut tcp) = TcpPacket::new_checked(segment) else {
        return false;
    };
    tcp.set_seq_number(TcpSeqNumber(tcp.seq_number().0.wrapping_add(1)));
    tcp.fill_checksum(&source, &destination);
    true
}

/// `frame`'s headers without its payload, its sequence number moved past the payload: a pure
/// ACK that smoltcp accepts in its window and counts as a duplicate.
pub(crate) fn dup_ack(at: &TcpInFrame, frame: &[u8]) -> Option<DupAck> {
    let (source, destination, len) = (at.source(frame)?, at.destination(frame)?, at.len);
    let tcp = at.segment(frame)?;
    // Headers from a corrupted segment must not become a valid one.
    if !tcp.verify_checksum(&source, &destination) {
        return None;
    }
    let tcp_header = usize::from(tcp.header_len());
    let payload = len.checked_sub(tcp_header)?;
    let next_seq = TcpSeqNumber(
        tcp.seq_number()
            .0
            .wrapping_add(i32::try_from(payload).ok()?),
    );
    let mut copy = DupAck::from_slice(frame.get(..at.at.checked_add(tcp_header)?)?).ok()?;
    let (ip, segment) = copy.split_at_mut_checked(at.at)?;
    let ip = ip.get_mut(at.ip_at..)?;
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

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::frames::{self, Peer};
    use crate::wire::tcp_in_frame;
    use smoltcp::phy::{ChecksumCapabilities, Medium};
    use smoltcp::wire::TcpPacket;
    use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpControl, TcpRepr};

    const PORT: u16 = 7;

    fn at(frame: &[u8]) -> Option<TcpInFrame> {
        tcp_in_frame(Medium::Ethernet, frame)
    }

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
        let loss = |frame: &[u8], port| {
            tcp_in_frame(Medium::Ethernet, frame)
                .and_then(|t| inspect(&t, frame, port))
                .map(|s| s.reports_loss)
        };
        let lost = segment(1000, [Some((2460, 2460 + 3 * 1460)), None, None], b"data");
        let seen = at(&lost)
            .and_then(|t| inspect(&t, &lost, PORT))
            .expect("a segment");
        assert_eq!((seen.ack, seen.window, seen.payload), (1000, 1000, 4));
        assert_eq!(
            at(&lost).and_then(|t| t.source_endpoint(&lost)),
            Some(Peer::client_v4(40000).endpoint())
        );
        assert_eq!(loss(&lost, PORT), Some(true));
        let reordered = segment(1000, [Some((2460, 2460 + 1460)), None, None], b"data");
        assert_eq!(
            loss(&reordered, PORT),
            Some(false),
            "one segment: reordering"
        );
        assert_eq!(loss(&segment(1000, [None; 3], b"data"), PORT), Some(false));
        assert_eq!(loss(&lost, PORT + 1), None, "another port");
        for cut in 0..lost.len() {
            let cut = &lost[..cut];
            if let Some(t) = at(cut) {
                let _ = inspect(&t, cut, PORT);
                let _ = dup_ack(&t, cut);
                let _ = with_ack(&t, cut, 1, 1);
            }
        }
    }

    impl Recovery {
        /// `freshen` with no checksum to verify (a segment that is not trusted alone).
        fn freshen_t(&mut self, segment: &Segment) -> Option<(u32, u16)> {
            self.freshen(segment, || false)
        }
    }

    #[test]
    fn a_verified_pure_ack_is_trusted_at_once() {
        let mut r = Recovery::NEW;
        let seen = |ack: u32, payload: &[u8]| {
            let f = segment(ack, [None; 3], payload);
            at(&f).and_then(|t| inspect(&t, &f, PORT)).expect("segment")
        };
        assert_eq!(r.freshen(&seen(3000, b""), || true), None);
        assert_eq!(r.freshen(&seen(2500, b"data"), || true), Some((3000, 1000)));
        assert_eq!(
            r.freshen(&seen(4000, b"data"), || true),
            None,
            "data needs a second segment"
        );
        assert_eq!(r.freshen(&seen(2800, b"data"), || true), Some((3000, 1000)));
    }

    #[test]
    fn a_data_segment_with_a_stale_ack_gets_the_newest_one() {
        let mut r = Recovery::NEW;
        let seen = |ack: u32, payload: &[u8]| {
            {
                let f = segment(ack, [None; 3], payload);
                at(&f).and_then(|t| inspect(&t, &f, PORT))
            }
            .expect("segment")
        };
        assert_eq!(r.freshen_t(&seen(2000, b"x")), None);
        assert_eq!(r.freshen_t(&seen(3000, b"")), None, "a newer pure ACK");
        assert_eq!(
            r.freshen_t(&seen(2500, b"data")),
            None,
            "3000 seen once: not trusted"
        );
        assert_eq!(r.freshen_t(&seen(3000, b"")), None);
        assert_eq!(
            r.freshen_t(&seen(3000, b"x")),
            None,
            "3000 seen twice: trusted"
        );
        assert_eq!(
            r.freshen_t(&seen(2500, b"data")),
            Some((3000, 1000)),
            "overtaken"
        );
        assert_eq!(
            r.freshen_t(&seen(2500, b"")),
            None,
            "an old pure ACK says nothing"
        );
        assert_eq!(r.freshen_t(&seen(3000, b"data")), None);
        // Sequence numbers wrap.
        let mut w = Recovery::NEW;
        assert_eq!(w.freshen_t(&seen(u32::MAX - 10, b"")), None);
        assert_eq!(w.freshen_t(&seen(5, b"")), None, "5 comes after 2^32 - 11");
        assert_eq!(w.freshen_t(&seen(5, b"")), None);
        assert_eq!(w.freshen_t(&seen(u32::MAX - 10, b"d")), Some((5, 1000)));

        let stale = segment(2500, [None; 3], b"data");
        let fixed = with_ack(&at(&stale).expect("tcp"), &stale, 3000, 77).expect("a copy");
        let eth = EthernetFrame::new_checked(&fixed[..]).expect("ethernet");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        let (src, dst) = (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        );
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default())
            .expect("a valid segment");
        assert_eq!(repr.ack_number, Some(TcpSeqNumber(3000)));
        assert_eq!(repr.window_len, 77);
        assert_eq!(repr.payload, b"data");
        // A corrupted segment stays corrupted: its checksum is updated, not recomputed.
        let mut corrupted = stale.clone();
        let last = corrupted.len() - 1;
        corrupted[last] ^= 0x40;
        let fixed = with_ack(&at(&corrupted).expect("tcp"), &corrupted, 3000, 77).expect("a copy");
        let ip = Ipv4Packet::new_checked(EthernetFrame::new_checked(&fixed[..]).unwrap().payload())
            .unwrap()
            .payload()
            .to_vec();
        assert!(
            !TcpPacket::new_checked(&ip[..])
                .unwrap()
                .verify_checksum(&src, &dst)
        );
        assert_eq!(
            dup_ack(&at(&corrupted).expect("tcp"), &corrupted),
            None,
            "no ACK from a corrupted segment"
        );
    }

    #[test]
    fn the_duplicate_ack_is_the_headers_without_the_payload_past_it() {
        let lost = segment(1000, [Some((2460, 2460 + 3 * 1460)), None, None], b"data");
        let ack = dup_ack(&at(&lost).expect("tcp"), &lost).expect("a copy");
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
        assert!(
            !r.start(7, t + Duration::from_millis(100)),
            "its retransmission is on its way"
        );
        assert!(
            r.start(7, t + RETRY_AFTER),
            "the retransmission was lost too"
        );
        assert!(r.start(8, t + RETRY_AFTER), "the next hole at once");
    }
}
