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

/// The sender of `frame` when it is a well-formed initial SYN to TCP port `port`.
pub(crate) fn initial_syn_source(medium: Medium, frame: &[u8], port: u16) -> Option<IpEndpoint> {
    let (source, IpProtocol::Tcp, segment) = ip_payload(medium, frame)? else {
        return None;
    };
    let tcp = TcpPacket::new_checked(segment).ok()?;
    (tcp.syn() && !tcp.ack() && !tcp.rst() && tcp.dst_port() == port)
        .then(|| IpEndpoint::new(source, tcp.src_port()))
}

/// The source, transport protocol and payload of an unfragmented IP packet inside `frame`.
fn ip_payload(medium: Medium, frame: &[u8]) -> Option<(IpAddress, IpProtocol, &[u8])> {
    match medium {
        Medium::Ethernet => {
            let eth = smoltcp::wire::EthernetFrame::new_checked(frame).ok()?;
            match eth.ethertype() {
                smoltcp::wire::EthernetProtocol::Ipv4 => ipv4_payload(eth.payload()),
                #[cfg(feature = "proto-ipv6")]
                smoltcp::wire::EthernetProtocol::Ipv6 => ipv6_payload(eth.payload()),
                _ => None,
            }
        }
        // Raw IP: the version nibble tells the family.
        #[cfg(feature = "medium-ip")]
        Medium::Ip => match frame.first().map(|b| b >> 4) {
            Some(4) => ipv4_payload(frame),
            #[cfg(feature = "proto-ipv6")]
            Some(6) => ipv6_payload(frame),
            _ => None,
        },
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn ipv4_payload(packet: &[u8]) -> Option<(IpAddress, IpProtocol, &[u8])> {
    let ip = smoltcp::wire::Ipv4Packet::new_checked(packet).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    Some((
        IpAddress::Ipv4(ip.src_addr()),
        ip.next_header(),
        ip.payload(),
    ))
}

#[cfg(feature = "proto-ipv6")]
fn ipv6_payload(packet: &[u8]) -> Option<(IpAddress, IpProtocol, &[u8])> {
    let ip = smoltcp::wire::Ipv6Packet::new_checked(packet).ok()?;
    Some((
        IpAddress::Ipv6(ip.src_addr()),
        ip.next_header(),
        ip.payload(),
    ))
}

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
