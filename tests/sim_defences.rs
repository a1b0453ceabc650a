//! Defences on the simulated network: a SYN flood from spoofed addresses that never answer
//! (their ARP requests go unanswered), connections that hold every slot without sending, and
//! a client that stops reading must not starve or slow real clients.

mod common;

use common::*;
use smolecho::sim::Side;
use smolecho::sim::frames::{self, Peer};
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::{EthernetAddress, IpAddress, Ipv4Address};
use smolecho::{TcpClientConfig, TcpConfig};

/// An initial SYN from a spoofed source to the server's echo port.
pub fn spoofed_syn(n: u32) -> frames::Frame {
    // 1000 spoofed addresses, 10.0.4.0 - 10.0.7.231: inside the server's /16, so it sends ARP
    // requests for them, which nobody answers.
    let host = n % 1000;
    let spoofed = Peer {
        mac: EthernetAddress([0x02, 0, 0, 0, 0x66, 0x66]),
        addr: IpAddress::Ipv4(Ipv4Address::new(
            10,
            0,
            4 + (host / 250) as u8,
            (host % 250) as u8,
        )),
        port: 1024 + (n % 60000) as u16,
    };
    frames::syn(&spoofed, &Peer::server_v4(PORT), n)
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
fn silent_udp(src: Ipv4Address) -> frames::Frame {
    let nobody = Peer {
        mac: EthernetAddress([0x02, 0, 0, 0, 0x77, 0x77]),
        addr: IpAddress::Ipv4(src),
        port: 4242,
    };
    frames::udp(&nobody, &Peer::server_v4(PORT), b"from nobody")
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

/// The issue-10 scenario: 100 connections from the new client's own host hold every slot and
/// never send (2 s idle timeout, tap_server's 256-SYN backlog). Those still waiting retry
/// their SYNs; the newcomer, from the same address, must be served within 5 s: a slot taken
/// back from an idle holder goes to the newest waiting client, not to the crowd ahead of it.
#[test]
fn idle_holders_from_the_new_clients_own_address_do_not_keep_it_waiting() {
    let mut w = World::<8, 256>::with_backlog::<1024, 1024, 1472>(TcpConfig {
        idle_timeout: Some(Duration::from_secs(2)),
        ..TcpConfig::on_port(PORT)
    });
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
    // Same host, same IPv4 address as every holder.
    let mut run = TcpRun::new::<1024, 1024>(
        &mut w.client_sockets,
        TcpClientConfig {
            timeout: Duration::from_secs(30),
            ..TcpClientConfig::DEFAULT
        },
        server_v4(),
        46000,
        smolecho::TcpClientConfig::DEFAULT_MESSAGE,
    );
    run.start_at = w.now;
    {
        let mut actors: Vec<&mut dyn Actor> =
            holders.iter_mut().map(|r| r as &mut dyn Actor).collect();
        actors.push(&mut run);
        w.run_until(&mut actors, Duration::from_secs(30), |w| {
            w.node.tcp_counters().accepted > 300
        });
    }
    let c = w.node.tcp_counters();
    match run.outcome() {
        Some(smolecho::TcpOutcome::Echoed { connect, .. }) => {
            println!("served {connect} after arriving; server {c:?}");
            assert!(
                connect <= Duration::from_secs(5),
                "served only after {connect}"
            );
        }
        other => panic!("not served: {other:?}; server {c:?}"),
    }
}

/// The degraded-links scenario: 32 clients on 8 slots over a link that loses 2 % of the
/// frames each way (plus 1 % duplicates, 0.5 % corrupted, 1 % reordered), in 10 seeded runs.
/// Every client is served and none is reset: a handshake slowed by a lost SYN-ACK or ACK is
/// not a SYN flood, and its slot is never recycled under a client that believes it connected.
#[test]
fn thirty_two_clients_on_eight_slots_over_a_lossy_link_are_all_served_and_none_reset() {
    use smolecho::sim::Faults;
    let faults = Faults {
        loss: 20,
        duplicate: 10,
        reorder: 10,
        corrupt: 5,
    };
    let message = pattern(4096);
    for seed in 0..10u64 {
        let mut w = World::<8, 256>::with_backlog::<2048, 2048, 1472>(TcpConfig::on_port(PORT));
        w.link.reseed(seed);
        w.link.set_faults(Side::A, faults);
        w.link.set_faults(Side::B, faults);
        let mut runs: Vec<TcpRun> = (0..32u16)
            .map(|i| {
                let mut run = TcpRun::new::<4096, 4096>(
                    &mut w.client_sockets,
                    TcpClientConfig {
                        timeout: Duration::from_secs(60),
                        ..TcpClientConfig::DEFAULT
                    },
                    server_v4(),
                    30000 + i,
                    message,
                );
                run.start_at = Instant::from_millis(i64::from(i % 4));
                run
            })
            .collect();
        {
            let mut actors: Vec<&mut dyn Actor> =
                runs.iter_mut().map(|r| r as &mut dyn Actor).collect();
            w.run_until(&mut actors, Duration::from_secs(120), |_| false);
        }
        let c = w.node.tcp_counters();
        let outcomes: Vec<_> = runs.iter().map(|r| r.outcome()).collect();
        let served = outcomes
            .iter()
            .filter(|o| o.is_some_and(|o| o.is_ok()))
            .count();
        println!("seed {seed}: {served}/32 served in {}; server {c:?}", w.now);
        for (i, outcome) in outcomes.iter().enumerate() {
            assert!(
                outcome.is_some_and(|o| o.is_ok()),
                "seed {seed}: client {i}: {outcome:?}; server {c:?}; link {:?}",
                w.link.stats()
            );
        }
        assert_eq!(c.half_open_recycled, 0, "seed {seed}: no flood here: {c:?}");
        assert_eq!(c.evicted, 0, "seed {seed}: nobody idle here: {c:?}");
    }
}
