//! Reading a received frame just far enough to recognise an initial SYN.
//!
//! Admission looks at every frame before smoltcp does, but it only ever acts on *initial*
//! SYNs (SYN set, ACK and RST clear) to the service port that parse completely as Ethernet (or
//! raw IP) + unfragmented IPv4/IPv6 + TCP. Fragments, extension headers, malformed frames and
//! every other protocol are not recognised, so they go to smoltcp untouched.

use smoltcp::phy::Medium;
use smoltcp::wire::{IpAddress, IpEndpoint, TcpPacket};

/// The largest SYN frame kept for replay: Ethernet + IPv4 with options + TCP with options
/// (14 + 60 + 60). A larger initial SYN is not kept (it is held or passed, never replayed).
pub(crate) const MAX_SYN_FRAME: usize = 134;

/// Where a TCP segment sits in a frame, and the fields of its header the node reads.
///
/// Read straight from the bytes at fixed offsets, after checking every length the IP and TCP
/// headers state against the frame: this runs for every frame, so it reads the few fields
/// the node needs and leaves the addresses in the frame until someone asks
/// ([`source`](Self::source)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpInFrame {
    /// Where the IP header starts.
    pub(crate) ip_at: usize,
    /// Where the TCP segment starts.
    pub(crate) at: usize,
    /// The segment's length, as the IP header says (without link padding).
    pub(crate) len: usize,
    /// IPv6 (else IPv4).
    v6: bool,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) syn: bool,
    pub(crate) ack: Option<u32>,
    pub(crate) rst: bool,
    /// The window field, as sent (scaled).
    pub(crate) window: u16,
    /// The TCP header's length, options included.
    pub(crate) header_len: u8,
}

impl TcpInFrame {
    /// The segment of `frame` (the frame this was parsed from).
    pub(crate) fn segment<'f>(&self, frame: &'f [u8]) -> Option<TcpPacket<&'f [u8]>> {
        TcpPacket::new_checked(frame.get(self.at..self.at.checked_add(self.len)?)?).ok()
    }

    /// The sender's address, read from `frame` (the frame this was parsed from).
    pub(crate) fn source(&self, frame: &[u8]) -> Option<IpAddress> {
        self.address(frame, IPV4_SOURCE, IPV6_SOURCE)
    }

    /// The receiver's address, read from `frame`.
    pub(crate) fn destination(&self, frame: &[u8]) -> Option<IpAddress> {
        self.address(frame, IPV4_SOURCE + 4, IPV6_SOURCE + 16)
    }

    /// The sender's address and port.
    pub(crate) fn source_endpoint(&self, frame: &[u8]) -> Option<IpEndpoint> {
        Some(IpEndpoint::new(self.source(frame)?, self.src_port))
    }

    fn address(&self, frame: &[u8], v4_at: usize, _v6_at: usize) -> Option<IpAddress> {
        let ip = frame.get(self.ip_at..)?;
        if self.v6 {
            #[cfg(feature = "proto-ipv6")]
            {
                let bytes: [u8; 16] = ip.get(_v6_at.._v6_at.checked_add(16)?)?.try_into().ok()?;
                return Some(IpAddress::Ipv6(bytes.into()));
            }
            #[cfg(not(feature = "proto-ipv6"))]
            return None;
        }
        let bytes: [u8; 4] = ip.get(v4_at..v4_at.checked_add(4)?)?.try_into().ok()?;
        Some(IpAddress::Ipv4(bytes.into()))
    }
}

/// The TCP segment of an unfragmented IPv4 or IPv6 packet in `frame`, parsed once per frame
/// for admission and recovery alike.
#[inline]
pub(crate) fn tcp_in_frame(medium: Medium, frame: &[u8]) -> Option<TcpInFrame> {
    let ip_at = match medium {
        Medium::Ethernet => match frame.get(ETHERTYPE..ETHERTYPE + 2)? {
            [0x08, 0x00] => ETHERNET_HEADER,
            #[cfg(feature = "proto-ipv6")]
            [0x86, 0xdd] => ETHERNET_HEADER,
            _ => return None,
        },
        #[cfg(feature = "medium-ip")]
        Medium::Ip => 0,
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    let ip = frame.get(ip_at..)?;
    let (v6, header, len) = match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let [
                version_ihl,
                _,
                len_hi,
                len_lo,
                _,
                _,
                flags_hi,
                flags_lo,
                _,
                protocol,
            ] = *ip.first_chunk::<10>()?;
            let header = usize::from(version_ihl & 0x0f).saturating_mul(4);
            let total = usize::from(u16::from_be_bytes([len_hi, len_lo]));
            // More fragments (0x20) or a fragment offset: not a whole segment.
            let fragment = flags_hi & 0x3f != 0 || flags_lo != 0;
            if protocol != TCP || fragment || header < 20 || total > ip.len() {
                return None;
            }
            (false, header, total.checked_sub(header)?)
        }
        #[cfg(feature = "proto-ipv6")]
        Some(6) => {
            let fixed = ip.first_chunk::<IPV6_HEADER>()?;
            let [_, _, _, _, len_hi, len_lo, next_header, ..] = *fixed;
            let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
            // Extension headers are not walked: such a segment goes to smoltcp untouched.
            if next_header != TCP || len > ip.len().saturating_sub(IPV6_HEADER) {
                return None;
            }
            (true, IPV6_HEADER, len)
        }
        _ => return None,
    };
    let at = ip_at.checked_add(header)?;
    let segment = frame.get(at..at.checked_add(len)?)?;
    let [
        src_hi,
        src_lo,
        dst_hi,
        dst_lo,
        _,
        _,
        _,
        _,
        a0,
        a1,
        a2,
        a3,
        offset,
        flags,
        win_hi,
        win_lo,
        ..,
    ] = *segment.first_chunk::<20>()?;
    let header_len = (offset >> 4).saturating_mul(4);
    if header_len < 20 || usize::from(header_len) > len {
        return None;
    }
    Some(TcpInFrame {
        ip_at,
        at,
        len,
        v6,
        src_port: u16::from_be_bytes([src_hi, src_lo]),
        dst_port: u16::from_be_bytes([dst_hi, dst_lo]),
        syn: flags & TCP_SYN != 0,
        ack: (flags & TCP_ACK != 0).then(|| u32::from_be_bytes([a0, a1, a2, a3])),
        rst: flags & TCP_RST != 0,
        window: u16::from_be_bytes([win_hi, win_lo]),
        header_len,
    })
}

/// The sender of `frame` when it is a well-formed initial SYN to TCP port `port`.
#[cfg(test)]
pub(crate) fn initial_syn_source(medium: Medium, frame: &[u8], port: u16) -> Option<IpEndpoint> {
    syn_source(tcp_in_frame(medium, frame).as_ref(), frame, port)
}

/// The sender of the segment `tcp` of `frame` when it is an initial SYN to `port`.
pub(crate) fn syn_source(tcp: Option<&TcpInFrame>, frame: &[u8], port: u16) -> Option<IpEndpoint> {
    let tcp = tcp?;
    (tcp.syn && tcp.ack.is_none() && !tcp.rst && tcp.dst_port == port)
        .then(|| tcp.source_endpoint(frame))
        .flatten()
}

/// The Ethernet header's length, and where its EtherType is.
const ETHERNET_HEADER: usize = 14;
const ETHERTYPE: usize = 12;

/// IP protocol number of TCP.
const TCP: u8 = 6;

/// Where the source address is in an IPv4 and an IPv6 header (the destination follows).
const IPV4_SOURCE: usize = 12;
const IPV6_SOURCE: usize = 8;

/// TCP header flags.
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// The fixed IPv6 header's length.
#[cfg(feature = "proto-ipv6")]
const IPV6_HEADER: usize = 40;

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::frames::{self, Peer};
    use smoltcp::wire::TcpControl;

    const PORT: u16 = 7;

    fn frame(port: u16, control: TcpControl, ack: bool) -> frames::Frame {
        let (client, server) = (Peer::client_v4(40000), Peer::server_v4(port));
        frames::tcp(&client, &server, control, 1, ack.then_some(1), &[])
    }

    fn is_syn(frame: &[u8]) -> bool {
        initial_syn_source(Medium::Ethernet, frame, PORT).is_some()
    }

    #[test]
    fn only_an_initial_syn_to_the_port_is_recognised() {
        let cases = [
            (PORT, TcpControl::Syn, false, true),
            (PORT, TcpControl::Syn, true, false),
            (PORT + 1, TcpControl::Syn, false, false),
            (PORT, TcpControl::None, true, false),
            (PORT, TcpControl::Rst, false, false),
            (PORT, TcpControl::Fin, true, false),
        ];
        for (port, control, ack, expected) in cases {
            assert_eq!(
                is_syn(&frame(port, control, ack)),
                expected,
                "port {port}, {control:?}, ack {ack}"
            );
        }
        let syn = frame(PORT, TcpControl::Syn, false);
        assert_eq!(
            initial_syn_source(Medium::Ethernet, &syn, PORT),
            Some(Peer::client_v4(40000).endpoint())
        );
    }

    #[test]
    fn malformed_truncated_and_fragmented_frames_are_never_taken_for_a_syn() {
        let syn = frame(PORT, TcpControl::Syn, false);
        for cut in 0..syn.len() {
            assert!(!is_syn(&syn[..cut]), "cut at {cut}");
        }
        // A fragment: set "more fragments".
        let mut frag = syn.clone();
        frag[14 + 6] |= 0x20;
        assert!(!is_syn(&frag));
        // Flags byte with SYN|RST.
        let mut syn_rst = syn.clone();
        syn_rst[14 + 20 + 13] |= 0x04;
        assert!(!is_syn(&syn_rst));
    }

    #[cfg(feature = "proto-ipv6")]
    #[test]
    fn an_ipv6_syn_is_recognised() {
        let (client, server) = (Peer::client_v6(40000), Peer::server_v6(PORT));
        let syn = frames::tcp(&client, &server, TcpControl::Syn, 1, None, &[]);
        assert!(is_syn(&syn));
        assert!(initial_syn_source(Medium::Ethernet, &syn, PORT + 1).is_none());
    }
}
