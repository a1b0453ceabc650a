//! Reading a received frame just far enough to recognise an initial SYN.
//!
//! Admission looks at every frame before smoltcp does, but it only ever acts on *initial*
//! SYNs (SYN set, ACK and RST clear) to the service port that parse completely as Ethernet (or
//! raw IP) + unfragmented IPv4/IPv6 + TCP. Fragments, extension headers, malformed frames and
//! every other protocol are not recognised, so they go to smoltcp untouched.

use smoltcp::phy::Medium;
use smoltcp::wire::{IpAddress, IpEndpoint, IpProtocol, TcpPacket};

/// The largest SYN frame kept for replay: Ethernet + IPv4 with options + TCP with options
/// (14 + 60 + 60). A larger initial SYN is not kept (it is held or passed, never replayed).
pub(crate) const MAX_SYN_FRAME: usize = 134;

/// Where a TCP segment sits in a frame: its addresses, where its IP header and the segment
/// start, and the segment's length (as the IP header says, without link padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpInFrame {
    pub(crate) source: IpAddress,
    pub(crate) destination: IpAddress,
    pub(crate) ip_at: usize,
    pub(crate) at: usize,
    pub(crate) len: usize,
    /// The segment's fields the node reads, from the same parse.
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) syn: bool,
    pub(crate) ack: Option<u32>,
    pub(crate) rst: bool,
    pub(crate) window: u16,
    pub(crate) header_len: u8,
}

impl TcpInFrame {
    /// The segment of `frame` (the frame this was parsed from).
    pub(crate) fn segment<'f>(&self, frame: &'f [u8]) -> Option<TcpPacket<&'f [u8]>> {
        TcpPacket::new_checked(frame.get(self.at..self.at.checked_add(self.len)?)?).ok()
    }
}

/// The TCP segment of an unfragmented IPv4 or IPv6 packet in `frame`, parsed once per frame
/// for admission and recovery alike.
pub(crate) fn tcp_in_frame(medium: Medium, frame: &[u8]) -> Option<TcpInFrame> {
    let ip_at = match medium {
        Medium::Ethernet => {
            let eth = smoltcp::wire::EthernetFrame::new_checked(frame).ok()?;
            match eth.ethertype() {
                smoltcp::wire::EthernetProtocol::Ipv4 => ETHERNET_HEADER,
                #[cfg(feature = "proto-ipv6")]
                smoltcp::wire::EthernetProtocol::Ipv6 => ETHERNET_HEADER,
                _ => return None,
            }
        }
        #[cfg(feature = "medium-ip")]
        Medium::Ip => 0,
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    let packet = frame.get(ip_at..)?;
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = smoltcp::wire::Ipv4Packet::new_checked(packet).ok()?;
            if ip.more_frags() || ip.frag_offset() != 0 || ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let header = usize::from(ip.header_len());
            with_segment(
                frame,
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                ip_at,
                ip_at.checked_add(header)?,
                usize::from(ip.total_len()).checked_sub(header)?,
            )
        }
        #[cfg(feature = "proto-ipv6")]
        Some(6) => {
            let ip = smoltcp::wire::Ipv6Packet::new_checked(packet).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            with_segment(
                frame,
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ip_at,
                ip_at.checked_add(IPV6_HEADER)?,
                usize::from(ip.payload_len()),
            )
        }
        _ => None,
    }
}

/// The segment at `at..at + len` of `frame`, parsed.
fn with_segment(
    frame: &[u8],
    source: IpAddress,
    destination: IpAddress,
    ip_at: usize,
    at: usize,
    len: usize,
) -> Option<TcpInFrame> {
    let tcp = TcpPacket::new_checked(frame.get(at..at.checked_add(len)?)?).ok()?;
    Some(TcpInFrame {
        source,
        destination,
        ip_at,
        at,
        len,
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        syn: tcp.syn(),
        ack: tcp.ack().then(|| tcp.ack_number().0 as u32),
        rst: tcp.rst(),
        window: tcp.window_len(),
        header_len: tcp.header_len(),
    })
}

/// The sender of `frame` when it is a well-formed initial SYN to TCP port `port`.
#[cfg(test)]
pub(crate) fn initial_syn_source(medium: Medium, frame: &[u8], port: u16) -> Option<IpEndpoint> {
    syn_source(tcp_in_frame(medium, frame).as_ref(), port)
}

/// The sender of the segment `tcp` of `frame` when it is an initial SYN to `port`.
pub(crate) fn syn_source(tcp: Option<&TcpInFrame>, port: u16) -> Option<IpEndpoint> {
    let tcp = tcp?;
    (tcp.syn && tcp.ack.is_none() && !tcp.rst && tcp.dst_port == port)
        .then(|| IpEndpoint::new(tcp.source, tcp.src_port))
}

/// The Ethernet header's length.
const ETHERNET_HEADER: usize = 14;

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
