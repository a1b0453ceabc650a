//! Seeded fault simulation: many scenarios over an impaired link (loss, duplication,
//! reordering, corruption, per-direction MTU), each fully determined by its seed.
//!
//! `SMOLECHO_SEEDS=N` sets how many seeds run (default 200; CI runs 1000 in release mode).
//! A failure names its seed; `SMOLECHO_SEED=N` replays just that one.

mod common;

use common::*;
use smolecho::sim::{Faults, Link, Rng, Side};
use smolecho::smoltcp::socket::tcp;
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::{IpAddress, IpEndpoint};
use smolecho::{TcpClientConfig, TcpConfig, TcpOutcome, UdpClientConfig, UdpOutcome};

const SLOTS: usize = 4;

fn faults(rng: &mut Rng) -> Faults {
    Faults {
        loss: rng.below(51) as u16,
        duplicate: rng.below(31) as u16,
        reorder: rng.below(51) as u16,
        corrupt: rng.below(31) as u16,
    }
}

fn endpoint(rng: &mut Rng) -> IpEndpoint {
    if rng.below(2) == 0 {
        server_v4()
    } else {
        IpEndpoint::new(IpAddress::Ipv6(SERVER_V6), PORT)
    }
}

/// What one seed did, for the summary.
#[derive(Default)]
struct Tally {
    echoed: usize,
    refused: usize,
    timed_out: usize,
    udp_echoed: usize,
}

fn run_seed(seed: u64) -> Result<Tally, String> {
    let mut rng = Rng::new(seed);
    let mut link = Box::new(Link::seeded(seed));
    link.set_faults(Side::A, faults(&mut rng));
    link.set_faults(Side::B, faults(&mut rng));
    let mtus = [1500, 1280, 1000];
    link.set_mtu(Side::A, mtus[rng.below(3)]);
    link.set_mtu(Side::B, mtus[rng.below(3)]);
    let mut w = World::<SLOTS>::on_link::<2048, 2048, 8, 1472>(
        link,
        TcpConfig {
            idle_timeout: Some(Duration::from_secs(10)),
            handshake_timeout: Some(Duration::from_secs(3)),
            ..TcpConfig::on_port(PORT)
        },
    );

    // More TCP clients than slots, with bulk data and half-closes, starting at random times.
    let mut runs: Vec<TcpRun> = (0..6u16)
        .map(|i| {
            let mut run = TcpRun::new::<2048, 2048>(
                &mut w.client_sockets,
                TcpClientConfig {
                    timeout: Duration::from_secs(90),
                    half_close: rng.below(2) == 0,
                },
                endpoint(&mut rng),
                41000 + i,
                pattern(1 + rng.below(40_000)),
            );
            run.start_at = Instant::from_millis(rng.below(2000) as i64);
            run
        })
        .collect();
    // Clients that send a little and then abort.
    let mut aborters: Vec<RawTcp> = (0..2u16)
        .map(|i| {
            let mut raw = RawTcp::new::<1024, 1024>(
                &mut w.client_sockets,
                endpoint(&mut rng),
                42000 + i,
                pattern(1 + rng.below(5000)),
            );
            raw.abort_at = Some(Instant::from_millis(rng.below(3000) as i64));
            raw
        })
        .collect();
    // UDP datagrams.
    let mut udps: Vec<UdpRun> = (0..3u16)
        .map(|i| {
            UdpRun::new::<1472>(
                &mut w.client_sockets,
                UdpClientConfig {
                    attempts: 5,
                    attempt_timeout: Duration::from_secs(1),
                },
                50000 + i,
                endpoint(&mut rng),
                pattern(1 + rng.below(1200)),
            )
        })
        .collect();

    {
        let mut actors: Vec<&mut dyn Actor> = Vec::new();
        actors.extend(runs.iter_mut().map(|r| r as &mut dyn Actor));
        actors.extend(aborters.iter_mut().map(|r| r as &mut dyn Actor));
        actors.extend(udps.iter_mut().map(|r| r as &mut dyn Actor));
        w.run_until(&mut actors, Duration::from_secs(120), |_| false);
    }
    // Let timeouts reclaim what the faults left behind (lost RSTs, lost FINs).
    w.run_for(&mut [], Duration::from_secs(40));

    let mut tally = Tally::default();
    for (i, run) in runs.iter().enumerate() {
        match run.outcome() {
            Some(TcpOutcome::Echoed { bytes, .. }) if bytes == run.message.len() => {
                tally.echoed += 1
            }
            // Under heavy loss smoltcp's retransmission back-off can outlast the server's idle
            // timeout: the server aborts (and counts it), the client sees the RST.
            Some(TcpOutcome::TimedOut | TcpOutcome::Reset) => tally.timed_out += 1,
            // A handshake that loss stretched past the handshake timeout is dropped with an
            // RST, which the connecting client reads as a refusal.
            Some(TcpOutcome::Refused) => tally.refused += 1,
            other => {
                return Err(format!(
                    "tcp client {i} to {}: {other:?}; server {:?}; link {:?}",
                    run.remote,
                    w.node.tcp_counters(),
                    w.link.stats()
                ));
            }
        }
    }
    for (i, udp) in udps.iter().enumerate() {
        match udp.client.outcome() {
            Some(UdpOutcome::Echoed { .. }) => tally.udp_echoed += 1,
            Some(UdpOutcome::TimedOut { .. }) => {}
            other => return Err(format!("udp client {i}: {other:?}")),
        }
        if udp.client.stray_replies() != 0 {
            return Err(format!(
                "udp client {i}: a reply differed from what was sent"
            ));
        }
    }
    for raw in &aborters {
        if raw.mismatch {
            return Err("an aborting client got bytes it did not send".into());
        }
    }
    let c = w.node.tcp_counters();
    if (tally.timed_out as u64) > c.timed_out + c.reset {
        return Err(format!(
            "{} clients gave up but the server counted {} timeouts and {} resets",
            tally.timed_out, c.timed_out, c.reset
        ));
    }
    if (tally.refused as u64) > c.handshake_timeouts + c.refused {
        return Err(format!(
            "{} clients were refused but the server dropped {} handshakes and refused {}",
            tally.refused, c.handshake_timeouts, c.refused
        ));
    }
    if c.active() != 0 || c.accepted != c.ended() || c.bytes_in != c.bytes_out {
        return Err(format!("counters do not add up: {c:?}"));
    }
    for handle in w.node.tcp_handles() {
        let socket: &tcp::Socket = w.server_sockets.get(handle);
        if socket.state() != tcp::State::Listen {
            return Err(format!("a slot is left in {}: {c:?}", socket.state()));
        }
    }
    Ok(tally)
}

#[test]
fn every_seed_keeps_the_echo_exact_and_frees_every_slot() {
    let seeds: Vec<u64> = match std::env::var("SMOLECHO_SEED") {
        Ok(one) => vec![one.parse().expect("SMOLECHO_SEED is a number")],
        Err(_) => {
            let n = std::env::var("SMOLECHO_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(200);
            (0..n).collect()
        }
    };
    let mut failures = Vec::new();
    let mut total = Tally::default();
    for &seed in &seeds {
        match run_seed(seed) {
            Ok(t) => {
                total.echoed += t.echoed;
                total.timed_out += t.timed_out;
                total.refused += t.refused;
                total.udp_echoed += t.udp_echoed;
            }
            Err(why) => {
                eprintln!("seed {seed} failed: {why} (replay: SMOLECHO_SEED={seed})");
                failures.push(seed);
            }
        }
    }
    println!(
        "{} seeds: {} TCP echoes complete, {} TCP clients timed out or reset by the idle \
         timeout, {} dropped by the handshake timeout, {} UDP echoes",
        seeds.len(),
        total.echoed,
        total.timed_out,
        total.refused,
        total.udp_echoed
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}
