//! The offload TAP device's frame work (`examples/support/vnet.rs`), without a TAP: the
//! virtio-net header's layout, the header written for each frame smoltcp builds, the
//! checksum checks of received frames, and the peers' MSS. Frames are built here by hand,
//! with a checksum written here, so neither smoltcp's wire code nor the module's own sums
//! can hide a mistake.

#[path = "../examples/support/vnet.rs"]
#[allow(dead_code)]
mod vnet;

use vnet::*;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const V4_A: [u8; 4] = [192, 168, 69, 1];
const V4_B: [u8; 4] = [192, 168, 69, 100];
const V6_A: [u8; 16] = [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_B: [u8; 16] = [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

/// RFC 1071, written out plainly.
fn sum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut acc: u64 = 0;
    for pair in bytes.chunks(2) {
        let hi = u64::from(pair[0]) << 8;
        let lo = pair.get(1).copied().map_or(0, u64::from);
        acc += hi | lo;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

fn pseudo(family: Family, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match family {
        Family::V4 => {
            p.extend_from_slice(&V4_A);
            p.extend_from_slice(&V4_B);
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        Family::V6 => {
            p.extend_from_slice(&V6_A);
            p.extend_from_slice(&V6_B);
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    p
}

/// An Ethernet frame A -> B carrying `transport` (protocol `proto`), with `ext` (IPv6
/// extension headers, already chained to `proto`) in between.
fn frame(family: Family, proto: u8, ext: &[u8], transport: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    match family {
        Family::V4 => {
            f.extend_from_slice(&[0x08, 0x00]);
            let total = (20 + transport.len()) as u16;
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            ip.extend_from_slice(&V4_A);
            ip.extend_from_slice(&V4_B);
            let c = sum(&[&ip]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        Family::V6 => {
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&((ext.len() + transport.len()) as u16).to_be_bytes());
            let next = if ext.is_empty() { proto } else { 0 };
            f.extend_from_slice(&[next, 64]);
            f.extend_from_slice(&V6_A);
            f.extend_from_slice(&V6_B);
            f.extend_from_slice(ext);
        }
    }
    f.extend_from_slice(transport);
    f
}

/// A TCP segment with a timestamp option (12 bytes, as smoltcp and Linux send), `flags`,
/// optionally an MSS option, and `payload`; its checksum right when `checksum`.
fn tcp(family: Family, flags: u8, mss: Option<u16>, payload: &[u8], checksum: bool) -> Vec<u8> {
    let mut options = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    if let Some(mss) = mss {
        options.extend_from_slice(&[2, 4]);
        options.extend_from_slice(&mss.to_be_bytes());
    }
    let header = 20 + options.len();
    let mut t = vec![0x1f, 0x40, 0xc0, 0x00, 0, 0, 0, 1, 0, 0, 0, 1];
    t.push(((header / 4) as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(&options);
    t.extend_from_slice(payload);
    if checksum {
        let c = sum(&[&pseudo(family, 6, t.len()), &t]);
        t[16..18].copy_from_slice(&c.to_be_bytes());
    }
    t
}

fn udp(family: Family, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0x1f, 0x40, 0xc0, 0x00];
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = sum(&[&pseudo(family, 17, u.len()), &u]);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const NO_FLAGS: VnetHeader = VnetHeader {
    flags: 0,
    gso_type: 0,
    hdr_len: 0,
    gso_size: 0,
    csum_start: 0,
    csum_offset: 0,
};

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn header_is_little_endian_in_the_kernel_layout() {
    let h = VnetHeader {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV6,
        hdr_len: 0x0102,
        gso_size: 1428,
        csum_start: 54,
        csum_offset: 16,
    };
    let bytes = h.encode();
    assert_eq!(bytes, [1, 4, 0x02, 0x01, 0x94, 0x05, 54, 0, 16, 0]);
    assert_eq!(VnetHeader::decode(&bytes), Some(h));
    assert_eq!(VnetHeader::decode(&bytes[..9]), None);
}

#[test]
fn correct_frames_pass_and_any_flipped_bit_in_a_checksummed_part_is_dropped() {
    for family in [Family::V4, Family::V6] {
        let frames = [
            frame(
                family,
                6,
                &[],
                &tcp(family, ACK, None, &payload(1000), true),
            ),
            frame(family, 17, &[], &udp(family, &payload(333))),
        ];
        for f in frames {
            assert_eq!(check_received(&NO_FLAGS, &f), Ok(()));
            // Every bit of the transport header and payload, and the IP addresses (in the
            // pseudo-header).
            let ip_start = 14;
            let addrs = match family {
                Family::V4 => ip_start + 12..ip_start + 20,
                Family::V6 => ip_start + 8..ip_start + 40,
            };
            let transport = match family {
                Family::V4 => 34..f.len(),
                Family::V6 => 54..f.len(),
            };
            for at in addrs.chain(transport) {
                for bit in 0..8 {
                    let mut bad = f.clone();
                    bad[at] ^= 1 << bit;
                    assert_eq!(
                        check_received(&NO_FLAGS, &bad),
                        Err(RxDrop::BadChecksum),
                        "bit {bit} of byte {at} flipped"
                    );
                }
            }
        }
    }
}

#[test]
fn kernel_marked_frames_are_not_checked_again() {
    // NEEDS_CSUM: a partial checksum (whatever sits in the field); DATA_VALID: checked.
    let f = frame(Family::V4, 6, &[], &tcp(Family::V4, ACK, None, b"x", false));
    assert_eq!(check_received(&NO_FLAGS, &f), Err(RxDrop::BadChecksum));
    for flags in [F_NEEDS_CSUM, F_DATA_VALID] {
        let h = VnetHeader { flags, ..NO_FLAGS };
        assert_eq!(check_received(&h, &f), Ok(()));
    }
}

#[test]
fn udp_without_checksum_passes_over_ipv4_only() {
    for (family, expected) in [(Family::V4, Ok(())), (Family::V6, Err(RxDrop::BadChecksum))] {
        let mut u = udp(family, b"no sum");
        u[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(
            check_received(&NO_FLAGS, &frame(family, 17, &[], &u)),
            expected
        );
    }
}

#[test]
fn ipv6_extension_headers_do_not_hide_the_transport_checksum() {
    // Hop-by-hop (8 bytes, PadN) then destination options (8 bytes), then TCP.
    let ext = [60, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0];
    let t = tcp(Family::V6, ACK, None, &payload(100), true);
    let f = frame(Family::V6, 6, &ext, &t);
    assert_eq!(check_received(&NO_FLAGS, &f), Ok(()));
    let mut bad = f.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    assert_eq!(check_received(&NO_FLAGS, &bad), Err(RxDrop::BadChecksum));
    // An extension header running past the payload.
    let mut long = f.clone();
    long[54 + 1] = 200;
    assert_eq!(check_received(&NO_FLAGS, &long), Err(RxDrop::Unverifiable));
}

#[test]
fn fragments_and_lengths_that_do_not_fit_are_dropped_unchecked() {
    let t = tcp(Family::V4, ACK, None, &payload(64), true);
    let mut fragment = frame(Family::V4, 6, &[], &t);
    fragment[14 + 6] = 0x20; // more fragments
    assert_eq!(
        check_received(&NO_FLAGS, &fragment),
        Err(RxDrop::Unverifiable)
    );
    let fragment6 = frame(Family::V6, 6, &[6, 0, 0, 1, 0, 0, 0, 9], &t);
    let mut fragment6 = fragment6;
    fragment6[14 + 6] = 44;
    assert_eq!(
        check_received(&NO_FLAGS, &fragment6),
        Err(RxDrop::Unverifiable)
    );
    let mut too_long = frame(Family::V4, 6, &[], &t);
    too_long[14 + 2] = 0x7f;
    assert_eq!(
        check_received(&NO_FLAGS, &too_long),
        Err(RxDrop::Unverifiable)
    );
    // ARP and other non-IP frames are smoltcp's to judge.
    let mut arp = frame(Family::V4, 6, &[], &t);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(check_received(&NO_FLAGS, &arp), Ok(()));
}

/// What the kernel does with a `NEEDS_CSUM` frame, then the independent check.
fn completed_ok(mut f: Vec<u8>, h: &VnetHeader) -> bool {
    assert!(complete_checksum(
        &mut f,
        usize::from(h.csum_start),
        usize::from(h.csum_offset)
    ));
    let start = usize::from(h.csum_start);
    let family = if f[12] == 0x08 {
        Family::V4
    } else {
        Family::V6
    };
    sum(&[&pseudo(family, 6, f.len() - start), &f[start..]]) == 0
}

#[test]
fn an_ordinary_segment_gets_a_partial_checksum_the_kernel_completes_correctly() {
    for (family, start) in [(Family::V4, 34u16), (Family::V6, 54)] {
        let mut f = frame(
            family,
            6,
            &[],
            &tcp(family, ACK, None, &payload(777), false),
        );
        let h = transmit_header(&mut f, 1500, None, None).expect("fits");
        assert_eq!(h.flags, F_NEEDS_CSUM);
        assert_eq!(h.gso_type, GSO_NONE);
        assert_eq!((h.csum_start, h.csum_offset), (start, 16));
        assert!(completed_ok(f, &h), "completed checksum verifies");
    }
}

#[test]
fn a_large_ipv4_segment_is_segmented_at_the_size_smoltcp_asked_for() {
    let mut f = frame(
        Family::V4,
        6,
        &[],
        &tcp(Family::V4, ACK, None, &payload(60_000), false),
    );
    let h = transmit_header(&mut f, 1500, Some(1448), None).expect("TCP");
    assert_eq!(h.gso_type, GSO_TCPV4);
    assert_eq!(h.gso_size, 1448);
    assert_eq!(h.hdr_len, 14 + 20 + 32);
    assert_eq!(
        (h.flags, h.csum_start, h.csum_offset),
        (F_NEEDS_CSUM, 34, 16)
    );
    assert!(completed_ok(f, &h));
    // Never above what the link carries, whatever was asked.
    let mut f = frame(
        Family::V4,
        6,
        &[],
        &tcp(Family::V4, ACK, None, &payload(9000), false),
    );
    let h = transmit_header(&mut f, 1500, Some(8948), None).expect("TCP");
    assert_eq!(h.gso_size, 1500 - 20 - 32);
}

#[test]
fn a_large_ipv6_segment_is_sized_from_the_link_and_the_peers_mss() {
    let big = || {
        frame(
            Family::V6,
            6,
            &[],
            &tcp(Family::V6, ACK, None, &payload(50_000), false),
        )
    };
    // The peer announced 1440 (Linux on a 1500 link): 1440 minus 12 option bytes.
    let mut f = big();
    let h = transmit_header(&mut f, 1500, None, Some(1440)).expect("TCP");
    assert_eq!((h.gso_type, h.gso_size), (GSO_TCPV6, 1428));
    assert_eq!(h.hdr_len, 14 + 40 + 32);
    assert_eq!((h.csum_start, h.csum_offset), (54, 16));
    assert!(completed_ok(f, &h));
    // A peer behind a smaller link announced less.
    let mut f = big();
    let h = transmit_header(&mut f, 1500, None, Some(1200)).expect("TCP");
    assert_eq!(h.gso_size, 1188);
    // A larger MSS than the link carries: the link decides.
    let mut f = big();
    let h = transmit_header(&mut f, 1500, None, Some(8940)).expect("TCP");
    assert_eq!(h.gso_size, 1500 - 40 - 32);
    // Nothing known: IPv6's minimum MSS.
    let mut f = big();
    let h = transmit_header(&mut f, 1500, None, None).expect("TCP");
    assert_eq!(h.gso_size, DEFAULT_MSS_V6 - 12);
}

#[test]
fn only_tcp_may_exceed_the_link() {
    let mut small_udp = frame(Family::V4, 17, &[], &udp(Family::V4, &payload(100)));
    assert_eq!(
        transmit_header(&mut small_udp, 1500, None, None),
        Ok(NO_FLAGS)
    );
    let mut big_udp = frame(Family::V6, 17, &[], &udp(Family::V6, &payload(3000)));
    assert_eq!(
        transmit_header(&mut big_udp, 1500, None, None),
        Err(TxDrop::Oversize)
    );
}

#[test]
fn the_peers_mss_is_learnt_from_its_syn() {
    let mut peers = PeerMss::default();
    // Received: B -> A would be the peer's SYN; our frames are A -> B, so build the SYN the
    // other way round by swapping the addresses and ports.
    let syn = {
        let mut t = tcp(Family::V6, SYN, Some(1380), &[], false);
        t.swap(0, 2);
        t.swap(1, 3);
        let mut f = frame(Family::V6, 6, &[], &t);
        let (a, b) = (f[22..38].to_vec(), f[38..54].to_vec());
        f[22..38].copy_from_slice(&b);
        f[38..54].copy_from_slice(&a);
        f
    };
    peers.learn(&syn);
    let outgoing = frame(
        Family::V6,
        6,
        &[],
        &tcp(Family::V6, ACK, None, &payload(10), false),
    );
    assert_eq!(peers.of_outgoing(&outgoing), Some(1380));
    // Another connection is unknown.
    let mut other = outgoing.clone();
    other[54 + 1] ^= 1;
    assert_eq!(peers.of_outgoing(&other), None);
    // A segment without SYN teaches nothing.
    let mut peers = PeerMss::default();
    let mut not_syn = syn.clone();
    not_syn[54 + 13] = ACK;
    peers.learn(&not_syn);
    assert_eq!(peers.of_outgoing(&outgoing), None);
}

const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;

/// A TCP segment between A (smoltcp, port 8000) and B (the peer, port 49152): from B to A
/// when `from_peer`, else from A to B; an optional window scale option; its checksum right.
#[allow(clippy::too_many_arguments)]
fn segment(
    family: Family,
    from_peer: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    wscale: Option<u8>,
    payload: &[u8],
) -> Vec<u8> {
    let options: Vec<u8> = wscale.map_or(Vec::new(), |s| vec![1, 3, 3, s]);
    let header = 20 + options.len();
    let (src, dst) = if from_peer {
        (0xc000u16, 8000u16)
    } else {
        (8000, 0xc000)
    };
    let mut t = Vec::new();
    t.extend_from_slice(&src.to_be_bytes());
    t.extend_from_slice(&dst.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push(((header / 4) as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(&options);
    t.extend_from_slice(payload);
    // The pseudo-header sum does not depend on the addresses' order.
    let c = sum(&[&pseudo(family, 6, t.len()), &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    let mut f = frame(family, 6, &[], &t);
    if from_peer {
        let (s, d, n) = match family {
            Family::V4 => (26, 30, 4),
            Family::V6 => (22, 38, 16),
        };
        let src_addr = f[s..s + n].to_vec();
        f.copy_within(d..d + n, s);
        f[d..d + n].copy_from_slice(&src_addr);
    }
    f
}

fn seq_of(frame: &[u8]) -> u32 {
    let Parsed::Transport(t) = parse(frame) else {
        panic!("not a transport frame");
    };
    u32::from_be_bytes(frame[t.start + 4..t.start + 8].try_into().unwrap())
}

fn tcp_checksum_right(frame: &[u8]) -> bool {
    match parse(frame) {
        Parsed::Transport(t) => transport_checksum_ok(frame, &t),
        _ => false,
    }
}

/// smoltcp (A) took the connection with window scale `wscale` and last advertised `ack` and
/// `window` (raw field).
fn advertised(family: Family, wscale: Option<u8>, ack: u32, window: u16) -> AdvertisedWindows {
    let mut windows = AdvertisedWindows::default();
    windows.sent(&segment(
        family,
        false,
        SYN | ACK,
        7000,
        ack.wrapping_sub(1000),
        65535,
        wscale,
        &[],
    ));
    windows.sent(&segment(family, false, ACK, 7001, ack, window, None, &[]));
    windows
}

#[test]
fn a_pure_ack_from_past_a_shrunk_zero_window_is_moved_back_to_its_edge() {
    for family in [Family::V4, Family::V6] {
        // The capture of the stall: smoltcp acked 4813722 with a zero window after its edge
        // had been 15 bytes farther; the peer's window updates start at 4813737.
        let mut windows = advertised(family, Some(4), 4_813_722, 0);
        let mut update = segment(family, true, ACK, 4_813_737, 3_765_162, 2101, None, &[]);
        let before = update.clone();
        assert!(windows.rescue_ack(&mut update, false));
        assert_eq!(seq_of(&update), 4_813_722);
        assert!(
            tcp_checksum_right(&update),
            "the checksum follows the change"
        );
        // Nothing else changed: ACK number, window, addresses.
        let Parsed::Transport(t) = parse(&update) else {
            unreachable!()
        };
        let unchanged = |r: std::ops::Range<usize>| update[r.clone()] == before[r];
        assert!(unchanged(0..t.start + 4) && unchanged(t.start + 8..t.start + 16));
        // A partial checksum (NEEDS_CSUM) is the pseudo-header sum alone: left as it is.
        let mut partial = before.clone();
        assert!(windows.rescue_ack(&mut partial, true));
        assert_eq!(seq_of(&partial), 4_813_722);
        assert_eq!(
            partial[t.start + 16..t.start + 18],
            before[t.start + 16..t.start + 18]
        );
    }
}

#[test]
fn only_acks_just_past_the_advertised_edge_are_moved() {
    for family in [Family::V4, Family::V6] {
        // Edge: 200000 + 100 << 4 = 201600.
        let mut windows = advertised(family, Some(4), 200_000, 100);
        let mut moved = |seq: u32| {
            let mut f = segment(family, true, ACK, seq, 1, 500, None, &[]);
            let changed = windows.rescue_ack(&mut f, false);
            assert!(tcp_checksum_right(&f));
            assert_eq!(seq_of(&f), if changed { 201_600 } else { seq });
            changed
        };
        assert!(moved(201_601), "past the edge: smoltcp would drop it");
        assert!(moved(201_615));
        assert!(moved(201_600 + (1 << 14) - 1));
        assert!(!moved(201_600 + (1 << 14)), "too far past the edge");
        // At the edge: smoltcp takes it once it has every byte up to there, which its
        // last ACK need not say yet (the capture of a window update lost that way).
        assert!(!moved(201_600));
        assert!(!moved(200_000), "at smoltcp's ACK");
        assert!(!moved(201_599), "inside the window: smoltcp takes it");
        assert!(!moved(199_990), "before the window: an old segment");
    }
}

#[test]
fn segments_other_than_pure_acks_of_followed_connections_are_left_alone() {
    for family in [Family::V4, Family::V6] {
        let mut windows = advertised(family, Some(4), 4_813_722, 0);
        let past = 4_813_737;
        let cases = [
            segment(family, true, ACK, past, 1, 9, None, &payload(15)),
            segment(family, true, ACK | PSH, past, 1, 9, None, &payload(1)),
            segment(family, true, ACK | FIN, past, 1, 9, None, &[]),
            segment(family, true, ACK | RST, past, 1, 9, None, &[]),
            segment(family, true, RST, past, 1, 9, None, &[]),
            segment(family, true, SYN | ACK, past, 1, 9, None, &[]),
            // Our own direction.
            segment(family, false, ACK, past, 1, 9, None, &[]),
        ];
        for mut f in cases {
            let before = f.clone();
            assert!(!windows.rescue_ack(&mut f, false));
            assert_eq!(f, before);
        }
        // Another connection (the peer's port differs).
        let mut other = segment(family, true, ACK, past, 1, 9, None, &[]);
        let Parsed::Transport(t) = parse(&other) else {
            unreachable!()
        };
        other[t.start + 1] ^= 1;
        assert!(!windows.rescue_ack(&mut other, true));
        // Once smoltcp sent its FIN or RST the connection is no longer followed.
        for end in [ACK | FIN, RST] {
            let mut ended = advertised(family, Some(4), 4_813_722, 0);
            ended.sent(&segment(family, false, end, 7001, 4_813_722, 0, None, &[]));
            let mut f = segment(family, true, ACK, past, 1, 9, None, &[]);
            assert!(!ended.rescue_ack(&mut f, false));
        }
        // A connection whose SYN was never seen is not followed.
        let mut unknown = AdvertisedWindows::default();
        unknown.sent(&segment(family, false, ACK, 7001, 4_813_722, 0, None, &[]));
        let mut f = segment(family, true, ACK, past, 1, 9, None, &[]);
        assert!(!unknown.rescue_ack(&mut f, false));
    }
}

#[test]
fn without_a_window_scale_the_window_is_taken_as_it_is() {
    let mut windows = advertised(Family::V4, None, 1000, 500);
    let mut inside = segment(Family::V4, true, ACK, 1499, 1, 9, None, &[]);
    assert!(!windows.rescue_ack(&mut inside, false));
    let mut at_edge = segment(Family::V4, true, ACK, 1500, 1, 9, None, &[]);
    assert!(!windows.rescue_ack(&mut at_edge, false));
    let mut past = segment(Family::V4, true, ACK, 1501, 1, 9, None, &[]);
    assert!(windows.rescue_ack(&mut past, false));
    assert_eq!(seq_of(&past), 1500);
}

#[test]
fn a_peers_syn_ack_without_window_scaling_leaves_smoltcps_window_unscaled() {
    // smoltcp connecting: its SYN offers scale 4, the peer's SYN-ACK offers none.
    let mut windows = AdvertisedWindows::default();
    windows.sent(&segment(
        Family::V4,
        false,
        SYN,
        7000,
        0,
        65535,
        Some(4),
        &[],
    ));
    let mut syn_ack = segment(Family::V4, true, SYN | ACK, 999, 7001, 65535, None, &[]);
    assert!(!windows.rescue_ack(&mut syn_ack, false));
    windows.sent(&segment(Family::V4, false, ACK, 7001, 1000, 500, None, &[]));
    // Edge 1000 + 500, not 1000 + 500 << 4.
    let mut past = segment(Family::V4, true, ACK, 1501, 7001, 9, None, &[]);
    assert!(windows.rescue_ack(&mut past, false));
    assert_eq!(seq_of(&past), 1500);
    // With the option in the peer's SYN-ACK the scale stays.
    let mut scaled = AdvertisedWindows::default();
    scaled.sent(&segment(
        Family::V4,
        false,
        SYN,
        7000,
        0,
        65535,
        Some(4),
        &[],
    ));
    let mut syn_ack = segment(Family::V4, true, SYN | ACK, 999, 7001, 65535, Some(7), &[]);
    assert!(!scaled.rescue_ack(&mut syn_ack, false));
    scaled.sent(&segment(Family::V4, false, ACK, 7001, 1000, 500, None, &[]));
    let mut inside = segment(Family::V4, true, ACK, 1501, 7001, 9, None, &[]);
    assert!(!scaled.rescue_ack(&mut inside, false));
}

#[test]
fn sequence_numbers_wrap() {
    let mut windows = advertised(Family::V6, Some(7), 0xffff_fff0, 0);
    let mut f = segment(Family::V6, true, ACK, 5, 1, 9, None, &[]);
    assert!(windows.rescue_ack(&mut f, false));
    assert_eq!(seq_of(&f), 0xffff_fff0);
    assert!(tcp_checksum_right(&f));
}

#[test]
fn the_checksum_update_matches_a_full_sum() {
    // RFC 1624's update against summing again, over changes that carry and that do not.
    for (old, new) in [
        (0u32, 1u32),
        (0x0001_0000, 0xffff_ffff),
        (4_813_737, 4_813_722),
        (0xdead_beef, 0x0000_0000),
    ] {
        let data = |v: u32| {
            let mut d = vec![0x12, 0x34, 0xab, 0xcd];
            d.extend_from_slice(&v.to_be_bytes());
            d
        };
        assert_eq!(
            update_checksum(sum(&[&data(old)]), old, new),
            sum(&[&data(new)])
        );
    }
}
