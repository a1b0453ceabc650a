//! End-to-end echo scenarios on the simulated network: an echo node (side A) and clients
//! (side B) on an in-memory Ethernet link with a manual clock. No privileges, deterministic.

mod common;

use common::*;
use smolecho::smoltcp::socket::tcp;
use smolecho::smoltcp::time::Duration;
use smolecho::smoltcp::wire::{IpAddress, IpEndpoint};
use smolecho::{Overflow, TcpClientConfig, TcpConfig, TcpOutcome, UdpClientConfig, UdpOutcome};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Let the last FIN/ACK exchanges finish, then check the counters add up and every slot is
/// free again.
fn assert_settled<const S: usize, const B: usize>(w: &mut World<S, B>) {
    w.run_for(&mut [], secs(1));
    let c = w.node.tcp_counters();
    assert_eq!(c.active(), 0, "connections still active: {c:?}");
    assert_eq!(c.accepted, c.ended(), "{c:?}");
    assert_eq!(c.bytes_in, c.bytes_out, "{c:?}");
    assert_eq!(w.node.active_connections(), 0);
}

fn tcp_echo_once(remote: IpEndpoint) {
    let mut w = World::<4>::new::<2048, 2048, 1500>(TcpConfig::on_port(PORT));
    let mut run = TcpRun::new::<1024, 1024>(
        &mut w.client_sockets,
        TcpClientConfig::DEFAULT,
        remote,
        40000,
        smolecho::TcpClientConfig::DEFAULT_MESSAGE,
    );
    assert!(w.run_until(&mut [&mut run], secs(5), |_| false) || run.finished());
    let outcome = run.outcome().expect("finished");
    assert!(
        matches!(outcome, TcpOutcome::Echoed { bytes: 19, .. }),
        "{outcome:?}"
    );
    assert_settled(&mut w);
    let c = w.node.tcp_counters();
    assert_eq!((c.accepted, c.closed, c.bytes_in), (1, 1, 19), "{c:?}");
}

#[test]
fn single_tcp_echo_over_ipv4() {
    tcp_echo_once(server_v4());
}

#[test]
fn single_tcp_echo_over_ipv6() {
    tcp_echo_once(server_v6());
}

#[test]
fn one_mebibyte_through_2k_buffers_is_byte_exact() {
    let mut w = World::<2>::new::<2048, 2048, 1500>(TcpConfig::on_port(PORT));
    let message = pattern(1 << 20);
    let mut run = TcpRun::new::<4096, 4096>(
        &mut w.client_sockets,
        TcpClientConfig {
            timeout: secs(120),
            ..TcpClientConfig::DEFAULT
        },
        server_v4(),
        40001,
        message,
    );
    w.run_until(&mut [&mut run], secs(120), |_| false);
    assert!(
        matches!(run.outcome(), Some(TcpOutcome::Echoed { bytes, .. }) if bytes == 1 << 20),
        "{:?}",
        run.outcome()
    );
    assert_eq!(w.node.tcp_counters().bytes_out, 1 << 20);
    assert_settled(&mut w);
}

/// `SLOTS + 3` clients at once, each holding its slot for a while.
fn overflow_world(overflow: Overflow) -> (World<4>, Vec<TcpRun>) {
    let mut w = World::<4>::new::<1024, 1024, 1500>(TcpConfig {
        overflow,
        ..TcpConfig::on_port(PORT)
    });
    let runs = (0..7)
        .map(|i| {
            TcpRun::new::<1024, 1024>(
                &mut w.client_sockets,
                TcpClientConfig {
                    timeout: secs(30),
                    ..TcpClientConfig::DEFAULT
                },
                server_v4(),
                41000 + i,
                pattern(64 * 1024),
            )
        })
        .collect();
    (w, runs)
}

fn run_all(w: &mut World<4>, runs: &mut [TcpRun], limit: Duration) {
    let mut actors: Vec<&mut dyn Actor> = runs.iter_mut().map(|r| r as &mut dyn Actor).collect();
    w.run_until(&mut actors, limit, |_| false);
}

#[test]
fn defer_serves_every_client_beyond_the_slots() {
    let (mut w, mut runs) = overflow_world(Overflow::Defer);
    run_all(&mut w, &mut runs, secs(30));
    for (i, run) in runs.iter().enumerate() {
        assert!(
            run.outcome().is_some_and(|o| o.is_ok()),
            "client {i}: {:?}",
            run.outcome()
        );
    }
    let c = w.node.tcp_counters();
    assert_eq!(c.accepted, 7, "{c:?}");
    assert_eq!(c.refused, 0, "{c:?}");
    assert!(c.held_syns >= 3, "the 3 extra SYNs were held: {c:?}");
    assert_settled(&mut w);
}

#[test]
fn refuse_resets_the_clients_beyond_the_slots() {
    let (mut w, mut runs) = overflow_world(Overflow::Refuse);
    run_all(&mut w, &mut runs, secs(30));
    let refused = runs
        .iter()
        .filter(|r| r.outcome() == Some(TcpOutcome::Refused))
        .count();
    let echoed = runs
        .iter()
        .filter(|r| r.outcome().is_some_and(|o| o.is_ok()))
        .count();
    assert_eq!((echoed, refused), (4, 3));
    let c = w.node.tcp_counters();
    assert_eq!((c.refused, c.held_syns, c.accepted), (3, 0, 4), "{c:?}");
    assert_settled(&mut w);
}

#[test]
fn back_to_back_connections_on_the_last_free_slot_are_never_refused() {
    let mut w = World::<3>::new::<1024, 1024, 1500>(TcpConfig {
        overflow: Overflow::Refuse,
        ..TcpConfig::on_port(PORT)
    });
    // Two silent clients hold two of the three slots.
    let mut holders: Vec<RawTcp> = (0..2)
        .map(|i| RawTcp::new::<512, 512>(&mut w.client_sockets, server_v4(), 42000 + i, &[]))
        .collect();
    {
        let mut actors: Vec<&mut dyn Actor> =
            holders.iter_mut().map(|r| r as &mut dyn Actor).collect();
        w.run_for(&mut actors, Duration::from_millis(50));
    }
    assert_eq!(w.node.active_connections(), 2);
    // Ten sequential clients share the last slot. Each connects in the same step as the
    // previous one finished, so the server gets the previous client's last ACK (which frees
    // the slot) and the new SYN in the same poll.
    let mut run = TcpRun::new::<1024, 1024>(
        &mut w.client_sockets,
        TcpClientConfig::DEFAULT,
        server_v4(),
        43000,
        smolecho::TcpClientConfig::DEFAULT_MESSAGE,
    );
    run.repeats = 9;
    w.run_until(&mut [&mut run], secs(10), |_| false);
    assert_eq!(run.outcomes.len(), 10, "{:?}", run.outcomes);
    assert!(run.outcomes.iter().all(|o| o.is_ok()), "{:?}", run.outcomes);
    w.run_for(&mut [], secs(1));
    let c = w.node.tcp_counters();
    assert_eq!((c.refused, c.held_syns), (0, 0), "{c:?}");
    assert_eq!(c.closed, 10, "{c:?}");
}

#[test]
fn half_close_with_data_in_flight_is_fully_echoed() {
    let mut w = World::<2>::new::<2048, 2048, 1500>(TcpConfig::on_port(PORT));
    let message = pattern(32 * 1024);
    let mut run = TcpRun::new::<4096, 8192>(
        &mut w.client_sockets,
        TcpClientConfig {
            half_close: true,
            ..TcpClientConfig::DEFAULT
        },
        server_v4(),
        40002,
        message,
    );
    w.run_until(&mut [&mut run], secs(10), |_| false);
    assert!(
        matches!(run.outcome(), Some(TcpOutcome::Echoed { bytes, .. }) if bytes == 32 * 1024),
        "{:?}",
        run.outcome()
    );
    assert_settled(&mut w);
    let c = w.node.tcp_counters();
    assert_eq!((c.closed, c.reset, c.bytes_out), (1, 0, 32 * 1024), "{c:?}");
}

#[test]
fn a_client_that_stops_reading_is_held_by_backpressure_and_loses_nothing() {
    let mut w = World::<2>::new::<2048, 2048, 1500>(TcpConfig::on_port(PORT));
    let message = pattern(256 * 1024);
    let mut peer = RawTcp::new::<2048, 8192>(&mut w.client_sockets, server_v4(), 40003, message);
    peer.reading = false;
    w.run_for(&mut [&mut peer], secs(5));
    // Stalled: the server took only what its transmit buffer could hold, and both server
    // buffers are full; nothing was dropped.
    let stalled = w.node.tcp_counters();
    assert!(stalled.bytes_in <= 2048 + 2048, "{stalled:?}");
    let socket: &tcp::Socket = w
        .node
        .tcp_handles()
        .find_map(|h| {
            let s: &tcp::Socket = w.server_sockets.get(h);
            s.is_active().then_some(s)
        })
        .expect("one active slot");
    assert_eq!(
        socket.recv_queue(),
        2048,
        "receive buffer full: peer sees zero window"
    );
    assert_eq!(socket.send_queue(), 2048);
    w.run_for(&mut [&mut peer], secs(5));
    assert_eq!(
        w.node.tcp_counters().bytes_in,
        stalled.bytes_in,
        "no progress while stalled"
    );
    // The peer reads again: everything comes back, in order.
    peer.reading = true;
    w.run_until(&mut [&mut peer], secs(60), |_| false);
    assert!(!peer.mismatch);
    assert_eq!(peer.received, message.len());
    assert_eq!(w.node.tcp_counters().timed_out, 0);
}

#[test]
fn a_silent_peer_is_reclaimed_by_the_idle_timeout() {
    let mut w = World::<1>::new::<1024, 1024, 1500>(TcpConfig {
        idle_timeout: Some(secs(3)),
        ..TcpConfig::on_port(PORT)
    });
    let mut silent = RawTcp::new::<512, 512>(&mut w.client_sockets, server_v4(), 40004, &[]);
    w.run_for(&mut [&mut silent], Duration::from_millis(100));
    assert_eq!(w.node.active_connections(), 1);
    w.run_for(&mut [&mut silent], Duration::from_millis(2500));
    assert_eq!(w.node.active_connections(), 1, "not before the timeout");
    w.run_for(&mut [&mut silent], secs(1));
    let c = w.node.tcp_counters();
    assert_eq!((c.timed_out, c.accepted), (1, 1), "{c:?}");
    let state = silent.socket(&mut w.client_sockets).state();
    assert_eq!(state, tcp::State::Closed, "the peer got an RST");
    // The slot serves the next client.
    let mut run = TcpRun::new::<1024, 1024>(
        &mut w.client_sockets,
        TcpClientConfig::DEFAULT,
        server_v4(),
        40005,
        smolecho::TcpClientConfig::DEFAULT_MESSAGE,
    );
    w.run_until(&mut [&mut run], secs(5), |_| false);
    assert!(
        run.outcome().is_some_and(|o| o.is_ok()),
        "{:?}",
        run.outcome()
    );
    assert_settled(&mut w);
}

#[test]
fn a_peer_reset_frees_the_slot_at_once() {
    let mut w = World::<1>::new::<1024, 1024, 1500>(TcpConfig::on_port(PORT));
    let mut peer = RawTcp::new::<512, 512>(&mut w.client_sockets, server_v4(), 40006, b"abc");
    w.run_for(&mut [&mut peer], Duration::from_millis(100));
    assert_eq!(peer.received, 3);
    peer.socket(&mut w.client_sockets).abort();
    w.run_for(&mut [&mut peer], Duration::from_millis(50));
    let c = w.node.tcp_counters();
    assert_eq!((c.reset, c.active()), (1, 0), "{c:?}");
    assert_eq!(w.node.active_connections(), 0);
}

fn udp_echo(remote: IpEndpoint, len: usize) -> UdpOutcome {
    let mut w = World::<1>::new::<1024, 1024, 1472>(TcpConfig::on_port(PORT));
    let mut run = UdpRun::new::<1472>(
        &mut w.client_sockets,
        UdpClientConfig::DEFAULT,
        50000,
        remote,
        pattern(len),
    );
    w.run_until(&mut [&mut run], secs(5), |_| false);
    let outcome = run.client.outcome().expect("finished");
    let c = w.node.udp_counters();
    if outcome.is_ok() {
        assert_eq!(
            (c.datagrams_in, c.datagrams_out, c.dropped),
            (1, 1, 0),
            "{c:?}"
        );
        assert_eq!(c.bytes_out, len as u64);
    }
    outcome
}

#[test]
fn udp_echoes_1_byte() {
    assert!(matches!(
        udp_echo(server_v4(), 1),
        UdpOutcome::Echoed { attempt: 1, .. }
    ));
}

#[test]
fn udp_echoes_1472_bytes_the_largest_unfragmented_ipv4_datagram() {
    assert!(matches!(
        udp_echo(server_v4(), 1472),
        UdpOutcome::Echoed { attempt: 1, .. }
    ));
}

#[test]
fn udp_echoes_over_ipv6() {
    // 1452 = 1500 - 40 (IPv6) - 8 (UDP): the largest that fits the link.
    assert!(udp_echo(server_v6(), 1).is_ok());
    assert!(udp_echo(server_v6(), 1452).is_ok());
}

#[test]
fn udp_datagram_larger_than_the_buffer_is_dropped_and_counted_never_truncated() {
    let mut w = World::<1>::new::<1024, 1024, 512>(TcpConfig::on_port(PORT));
    let mut fits = UdpRun::new::<1472>(
        &mut w.client_sockets,
        UdpClientConfig::DEFAULT,
        50001,
        server_v4(),
        pattern(512),
    );
    w.run_until(&mut [&mut fits], secs(5), |_| false);
    assert!(fits.client.outcome().is_some_and(|o| o.is_ok()));
    let mut too_big = UdpRun::new::<1472>(
        &mut w.client_sockets,
        UdpClientConfig {
            attempts: 2,
            ..UdpClientConfig::DEFAULT
        },
        50002,
        server_v4(),
        pattern(513),
    );
    w.run_until(&mut [&mut too_big], secs(5), |_| false);
    assert_eq!(
        too_big.client.outcome(),
        Some(UdpOutcome::TimedOut { attempts: 2 })
    );
    assert_eq!(
        too_big.client.stray_replies(),
        0,
        "no truncated echo came back"
    );
    let c = w.node.udp_counters();
    assert_eq!(c.datagrams_out, 1, "{c:?}");
}

#[test]
fn udp_with_the_transmit_buffer_full_drops_and_counts_and_tcp_still_echoes() {
    // 4 datagrams of room each way.
    let mut w = World::<1>::with_udp::<1024, 1024, 4, 4096>(TcpConfig::on_port(PORT));
    let mut runs: Vec<UdpRun> = (0..4)
        .map(|i| {
            UdpRun::new::<1472>(
                &mut w.client_sockets,
                UdpClientConfig {
                    attempts: 1,
                    ..UdpClientConfig::DEFAULT
                },
                51000 + i,
                server_v4(),
                pattern(100),
            )
        })
        .collect();
    // Resolve the neighbour first so the datagrams reach the server.
    {
        let mut warm = UdpRun::new::<1472>(
            &mut w.client_sockets,
            UdpClientConfig::DEFAULT,
            51100,
            server_v4(),
            b"warm",
        );
        w.run_until(&mut [&mut warm], secs(2), |_| false);
        assert!(warm.client.outcome().is_some_and(|o| o.is_ok()));
    }
    // The server's NIC cannot transmit: echoes pile up in its transmit buffer.
    w.link.pause_egress(smolecho::sim::Side::A, true);
    for round in 0..2 {
        let mut actors: Vec<&mut dyn Actor> =
            runs.iter_mut().map(|r| r as &mut dyn Actor).collect();
        w.run_for(&mut actors, Duration::from_millis(20));
        for r in runs.iter_mut() {
            r.started = false;
        }
        let _ = round;
    }
    let c = w.node.udp_counters();
    assert_eq!(c.datagrams_in, 1 + 8, "{c:?}");
    assert_eq!(c.datagrams_out, 1 + 4, "only 4 fit: {c:?}");
    assert_eq!(c.dropped, 4, "{c:?}");
    // TCP is unaffected once the NIC drains.
    w.link.pause_egress(smolecho::sim::Side::A, false);
    let mut run = TcpRun::new::<1024, 1024>(
        &mut w.client_sockets,
        TcpClientConfig::DEFAULT,
        server_v4(),
        40007,
        smolecho::TcpClientConfig::DEFAULT_MESSAGE,
    );
    w.run_until(&mut [&mut run], secs(5), |_| false);
    assert!(
        run.outcome().is_some_and(|o| o.is_ok()),
        "{:?}",
        run.outcome()
    );
}

#[test]
fn ipv4_and_ipv6_clients_are_served_on_the_same_port_at_once() {
    let mut w = World::<4>::new::<2048, 2048, 1500>(TcpConfig::on_port(PORT));
    let mut v4 = TcpRun::new::<2048, 2048>(
        &mut w.client_sockets,
        TcpClientConfig::DEFAULT,
        server_v4(),
        40008,
        pattern(10_000),
    );
    let mut v6 = TcpRun::new::<2048, 2048>(
        &mut w.client_sockets,
        TcpClientConfig::DEFAULT,
        IpEndpoint::new(IpAddress::Ipv6(SERVER_V6), PORT),
        40009,
        pattern(10_000),
    );
    w.run_until(&mut [&mut v4, &mut v6], secs(10), |_| false);
    assert!(
        v4.outcome().is_some_and(|o| o.is_ok()),
        "{:?}",
        v4.outcome()
    );
    assert!(
        v6.outcome().is_some_and(|o| o.is_ok()),
        "{:?}",
        v6.outcome()
    );
    assert_eq!(w.node.tcp_counters().accepted, 2);
    assert_settled(&mut w);
}

#[test]
fn tcp_client_reports_refused_when_nothing_listens() {
    let mut w = World::<1>::new::<1024, 1024, 1500>(TcpConfig::on_port(PORT));
    let mut run = TcpRun::new::<1024, 1024>(
        &mut w.client_sockets,
        TcpClientConfig::DEFAULT,
        IpEndpoint::new(IpAddress::Ipv4(SERVER_V4), PORT + 1),
        40010,
        smolecho::TcpClientConfig::DEFAULT_MESSAGE,
    );
    w.run_until(&mut [&mut run], secs(5), |_| false);
    assert_eq!(run.outcome(), Some(TcpOutcome::Refused));
}

#[test]
fn udp_client_retries_then_times_out_without_a_server() {
    let mut w = World::<1>::new::<1024, 1024, 1500>(TcpConfig::on_port(PORT));
    let mut run = UdpRun::new::<1472>(
        &mut w.client_sockets,
        UdpClientConfig {
            attempts: 3,
            attempt_timeout: Duration::from_millis(500),
        },
        50003,
        IpEndpoint::new(IpAddress::Ipv4(SERVER_V4), PORT + 1),
        b"anyone?",
    );
    w.run_until(&mut [&mut run], secs(5), |_| false);
    assert_eq!(
        run.client.outcome(),
        Some(UdpOutcome::TimedOut { attempts: 3 })
    );
}

#[test]
fn with_a_listen_backlog_held_clients_are_served_as_soon_as_a_slot_frees() {
    let mut w = World::<4, 16>::with_backlog::<1024, 1024, 1500>(TcpConfig::on_port(PORT));
    let mut runs: Vec<TcpRun> = (0..7)
        .map(|i| {
            TcpRun::new::<1024, 1024>(
                &mut w.client_sockets,
                TcpClientConfig::DEFAULT,
                server_v4(),
                41100 + i,
                pattern(16 * 1024),
            )
        })
        .collect();
    {
        let mut actors: Vec<&mut dyn Actor> =
            runs.iter_mut().map(|r| r as &mut dyn Actor).collect();
        w.run_until(&mut actors, secs(30), |_| false);
    }
    for (i, run) in runs.iter().enumerate() {
        match run.outcome() {
            // Without the backlog the three extra clients wait for their SYN retransmission
            // (1 s); with it they get the first slot that frees.
            Some(TcpOutcome::Echoed { connect, .. }) => {
                assert!(
                    connect < Duration::from_millis(500),
                    "client {i}: {connect}"
                )
            }
            other => panic!("client {i}: {other:?}"),
        }
    }
    let c = w.node.tcp_counters();
    assert_eq!((c.accepted, c.refused), (7, 0), "{c:?}");
    assert!(c.held_syns >= 3, "{c:?}");
    assert_settled(&mut w);
}
