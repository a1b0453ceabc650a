//! Defences on the simulated network: a SYN flood from spoofed addresses that never answer
//! (their ARP requests go unanswered), connections that hold every slot without sending, and
//! a client that stops reading must not starve or slow real clients.

mod common;

use common::*;
use smolecho::sim::Side;
use smolecho::smoltcp::phy::ChecksumCapabilities;
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};
use smolecho::{TcpClientConfig, TcpConfig};

/// An initial SYN from a spoofed source to the server's echo port.
pub fn spoofed_syn(n: u32) -> Vec<u8> {
    // 1000 spoofed addresses, 10.0.4.0 - 10.0.7.231: inside the server's /16, so it sends ARP
    // requests for them, which nobody answers.
    let host = n % 1000;
    let src = Ipv4Address::new(10, 0, 4 + (host / 250) as u8, (host % 250) as u8);
    let tcp = TcpRepr {
        src_port: 1024 + (n % 60000) as u16,
        dst_port: PORT,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(n as i32),
        ack_number: None,
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: SERVER_V4,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress([0x02, 0, 0, 0, 0x66, 0x66]),
        dst_addr: EthernetAddress([0x02, 0, 0, 0, 0, 1]),
        ethertype: EthernetProtocol::Ipv4,
    };
    let caps = ChecksumCapabilities::default();
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &caps);
    let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
    tcp.emit(
        &mut segment,
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(SERVER_V4),
        &caps,
    );
    buf
}

/// 20,000 spoofed SYNs from 1,000 addresses over 10 s while 8 real clients arrive one a
/// second; with `long_lived`, a client that stays connected the whole time holds one slot.
/// Every real client must be served during the flood, each within a second.
fn flood_with_real_clients(long_lived: bool) {
    const SYNS_PER_MS: u32 = 2;
    const FLOOD_MS: u32 = 10_000;
    let mut w = World::<8>::new::<2048, 2048, 1472>(TcpConfig::on_port(PORT));
    let mut runs: Vec<TcpRun> = (0..8u16)
        .map(|i| {
            let mut run = TcpRun::new::<2048, 2048>(
                &mut w.client_sockets,
                TcpClientConfig {
                    timeout: Duration::from_secs(30),
                    ..TcpClientConfig::DEFAULT
                },
                server_v4(),
                45000 + i,
                pattern(4096),
            );
            // Spread over the flood: the first after 0.5 s, the last after 7.5 s.
            run.start_at = Instant::from_millis(500 + 1000 * i64::from(i));
            run
        })
        .collect();
    let mut resident = RawTcp::new::<1024, 1024>(&mut w.client_sockets, server_v4(), 44000, b"hi");
    if long_lived {
        w.run_for(&mut [&mut resident], Duration::from_millis(50));
        assert_eq!(w.node.active_connections(), 1);
    }
    let mut sent = 0u32;
    for _ in 0..FLOOD_MS {
        for _ in 0..SYNS_PER_MS {
            assert!(w.link.inject(Side::A, &spoofed_syn(sent)), "link full");
            sent += 1;
        }
        let mut actors: Vec<&mut dyn Actor> =
            runs.iter_mut().map(|r| r as &mut dyn Actor).collect();
        if long_lived {
            actors.push(&mut resident);
        }
        w.step(&mut actors);
        w.now += Duration::from_millis(1);
    }
    assert_eq!(sent, 20_000);
    let c = w.node.tcp_counters();
    println!("after the flood (long-lived client: {long_lived}): {c:?}");
    for (i, run) in runs.iter().enumerate() {
        match run.outcome() {
            Some(smolecho::TcpOutcome::Echoed { connect, .. }) => {
                assert!(
                    connect < Duration::from_secs(1),
                    "real client {i}: connect took {connect}"
                )
            }
            other => panic!("real client {i} not served during the flood: {other:?}; server {c:?}"),
        }
    }
    assert!(c.half_open_recycled > 0, "{c:?}");
    if long_lived {
        assert_eq!(resident.received, 2, "the long-lived client was echoed");
        assert!(
            !resident.aborted && c.reset == 0 && c.evicted == 0,
            "and kept: {c:?}"
        );
    }
    // Once the flood is over every slot returns to listening (but the long-lived one).
    w.run_for(&mut [], Duration::from_secs(10));
    assert_eq!(w.node.active_connections(), usize::from(long_lived));
}

#[test]
fn twenty_thousand_spoofed_syns_do_not_starve_eight_real_clients() {
    flood_with_real_clients(false);
}

#[test]
fn a_syn_flood_beside_a_long_lived_client_does_not_starve_real_clients() {
    flood_with_real_clients(true);
}

#[test]
fn idle_holders_of_every_slot_are_reclaimed_and_a_new_client_is_served() {
    let idle = Duration::from_secs(5);
    let mut w = World::<8>::new::<1024, 1024, 1472>(TcpConfig {
        idle_timeout: Some(idle),
        ..TcpConfig::on_port(PORT)
    });
    // 100 connections that send nothing.
    let mut holders: Vec<RawTcp> = (0..100u16)
        .map(|i| RawTcp::new::<256, 256>(&mut w.client_sockets, server_v4(), 20000 + i, &[]))
        .collect();
    {
        let mut actors: Vec<&mut dyn Actor> =
            holders.iter_mut().map(|r| r as &mut dyn Actor).collect();
        w.run_for(&mut actors, Duration::from_secs(1));
    }
    assert_eq!(
        w.node.active_connections(),
        8,
        "the holders took every slot"
    );
    // A real client arrives while every slot is held. It comes from another address (the
    // client host's IPv6 one): a peer that holds silent connections itself may not evict.
    let mut run = TcpRun::new::<1024, 1024>(
        &mut w.client_sockets,
        TcpClientConfig {
            timeout: Duration::from_secs(60),
            ..TcpClientConfig::DEFAULT
        },
        server_v6(),
        46000,
        smolecho::TcpClientConfig::DEFAULT_MESSAGE,
    );
    run.start_at = w.now;
    let arrived = w.now;
    {
        let mut actors: Vec<&mut dyn Actor> =
            holders.iter_mut().map(|r| r as &mut dyn Actor).collect();
        actors.push(&mut run);
        w.run_until(&mut actors, Duration::from_secs(60), |_| false);
    }
    let c = w.node.tcp_counters();
    match run.outcome() {
        Some(smolecho::TcpOutcome::Echoed { connect, .. }) => {
            println!("served {connect} after arriving; server {c:?}");
            assert!(
                connect <= idle + Duration::from_secs(4),
                "served only after {connect} (idle timeout {idle})"
            );
        }
        other => panic!("not served: {other:?}; server {c:?}"),
    }
    assert!(c.evicted >= 1, "{c:?}");
    let _ = arrived;
}

/// The round-trip times of `runs` sequential echoes of 1 KiB, with or without a stuck reader
/// holding one slot with full buffers.
fn echo_rtts_with(stuck_reader: bool) -> Vec<Duration> {
    // No idle timeout: the stuck reader must stay stuck for the whole measurement.
    let mut w = World::<4>::new::<2048, 2048, 1472>(TcpConfig {
        idle_timeout: None,
        ..TcpConfig::on_port(PORT)
    });
    let mut stuck =
        RawTcp::new::<2048, 65536>(&mut w.client_sockets, server_v4(), 47000, pattern(60_000));
    stuck.reading = false;
    if stuck_reader {
        w.run_for(&mut [&mut stuck], Duration::from_secs(2));
        assert_eq!(
            w.node.active_connections(),
            1,
            "the stuck reader holds a slot"
        );
    }
    let mut rtts = Vec::new();
    for i in 0..20u16 {
        let mut run = TcpRun::new::<2048, 2048>(
            &mut w.client_sockets,
            TcpClientConfig::DEFAULT,
            server_v4(),
            47100 + i,
            pattern(1024),
        );
        run.start_at = w.now;
        if stuck_reader {
            w.run_until(&mut [&mut run, &mut stuck], Duration::from_secs(5), |_| {
                false
            });
        } else {
            w.run_until(&mut [&mut run], Duration::from_secs(5), |_| false);
        }
        match run.outcome() {
            Some(smolecho::TcpOutcome::Echoed { rtt, .. }) => rtts.push(rtt),
            other => panic!("echo {i} with stuck reader {stuck_reader}: {other:?}"),
        }
    }
    if stuck_reader {
        assert!(stuck.received < stuck.message.len(), "still stuck");
        assert_eq!(w.node.tcp_counters().timed_out, 0);
    }
    rtts
}

#[test]
fn a_stuck_reader_does_not_slow_the_other_slots() {
    let alone = echo_rtts_with(false);
    let beside_stuck = echo_rtts_with(true);
    let ms = |v: &[Duration]| v.iter().map(|d| d.total_millis()).collect::<Vec<_>>();
    println!("1 KiB echo RTTs alone (ms): {:?}", ms(&alone));
    println!(
        "1 KiB echo RTTs beside a stuck reader (ms): {:?}",
        ms(&beside_stuck)
    );
    let worst = |v: &[Duration]| v.iter().copied().max().unwrap();
    assert!(
        worst(&beside_stuck) <= worst(&alone) + Duration::from_millis(1),
        "alone {:?} vs beside a stuck reader {:?}",
        worst(&alone),
        worst(&beside_stuck)
    );
}

/// A UDP datagram to the echo port from an address that never answers ARP.
fn silent_udp(src: Ipv4Address) -> Vec<u8> {
    use smolecho::smoltcp::wire::{UdpPacket, UdpRepr};
    let payload = b"from nobody";
    let udp = UdpRepr {
        src_port: 4242,
        dst_port: PORT,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: SERVER_V4,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress([0x02, 0, 0, 0, 0x77, 0x77]),
        dst_addr: EthernetAddress([0x02, 0, 0, 0, 0, 1]),
        ethertype: EthernetProtocol::Ipv4,
    };
    let caps = ChecksumCapabilities::default();
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + udp.header_len() + payload.len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &caps);
    let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
    udp.emit(
        &mut datagram,
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(SERVER_V4),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &caps,
    );
    buf
}

#[test]
fn a_datagram_from_a_silent_neighbour_does_not_block_udp_echo() {
    let mut w = World::<1>::new::<1024, 1024, 1472>(TcpConfig::on_port(PORT));
    for round in 0..3u16 {
        assert!(w.link.inject(
            Side::A,
            &silent_udp(Ipv4Address::new(10, 0, 9, round as u8))
        ));
        w.run_for(&mut [], Duration::from_millis(10));
        let mut run = UdpRun::new::<1472>(
            &mut w.client_sockets,
            smolecho::UdpClientConfig {
                attempts: 3,
                attempt_timeout: Duration::from_millis(500),
            },
            52000 + round,
            server_v4(),
            b"a real client after it",
        );
        w.run_until(&mut [&mut run], Duration::from_secs(5), |_| false);
        assert!(
            run.client.outcome().is_some_and(|o| o.is_ok()),
            "round {round}: {:?}; {:?}",
            run.client.outcome(),
            w.node.udp_counters()
        );
    }
    let c = w.node.udp_counters();
    println!("{c:?}");
    assert!(c.tx_flushes >= 3, "{c:?}");
}
