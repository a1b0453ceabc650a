//! What each smoltcp knob does to an echo over a reordering link, in simulated time
//! (issue 9; the scenarios of `tests/sim_liveness.rs`). Prints, per configuration, the
//! throughput of the echo (echoed bits per simulated second, median over seeds) and the
//! longest time without echo progress (worst seed), and the ratio to the default
//! configuration measured in the same run.
//!
//! ```text
//! cargo bench --bench sim_liveness -- run [SEEDS] [MIB]     # defaults 3 and 8
//! benches/sim_liveness.sh                                    # every build-time knob too
//! ```
//!
//! Run-time knobs: the stale-ACK repair (on/off), the server's ACK delay (10 ms / none),
//! Nagle on the server (off / on), the buffers (128 KiB / 16 KiB). Build-time knobs, chosen by
//! `benches/sim_liveness.sh` through smoltcp's features and configuration variables: the
//! assembler's range count and the congestion controller; the `build` line says which.
//! Clients: `linux` ([`LinuxPeer`], the kernel's behaviour where it matters) and `smoltcp`
//! (a smoltcp socket, behind smolecho's repair too when the row's repair is on).
//!
//! Without arguments (as `cargo bench` runs it) it prints its usage and exits 0.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;

use common::linux_peer::{LinuxPeer, PeerConfig};
use common::*;
use smolecho::sim::{Delay, Link, Side};
use smolecho::smoltcp::socket::tcp;
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::{TcpClientConfig, TcpConfig};

const REORDER: Delay = Delay {
    min: Duration::from_micros(200),
    max: Duration::from_micros(600),
    ns_per_byte: 8,
};

/// Simulated time a run may take before it counts as not finished.
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Client {
    Linux,
    Smoltcp,
}

#[derive(Clone, Copy, PartialEq)]
struct Knobs {
    repair: bool,
    ack_delay: Option<Duration>,
    nagle: bool,
    buffers: Buffers,
}

#[derive(Clone, Copy, PartialEq)]
enum Buffers {
    /// tap_server's: 128 KiB each way.
    Host,
    /// 16 KiB each way.
    Small,
    /// The firmware's: 2 KiB each way, 4 slots.
    Firmware,
}

const DEFAULT: Knobs = Knobs {
    repair: true,
    ack_delay: Some(Duration::from_millis(10)),
    nagle: false,
    buffers: Buffers::Host,
};

struct Outcome {
    /// Echoed bits per simulated second (0 when not finished).
    bps: f64,
    longest_gap: Duration,
    finished: bool,
}

fn link(seed: u64) -> Box<Link<LINK_FRAMES>> {
    let mut link = Box::new(Link::seeded(seed));
    link.set_delay(Side::A, Some(REORDER));
    link.set_delay(Side::B, Some(REORDER));
    link
}

fn world<const SLOTS: usize, const BUF: usize>(seed: u64, knobs: Knobs) -> World<SLOTS> {
    let mut w = World::<SLOTS>::on_link::<BUF, BUF, 8, 1472>(
        link(seed),
        TcpConfig {
            ack_delay: knobs.ack_delay,
            ..TcpConfig::on_port(PORT)
        },
    );
    w.step = Duration::from_micros(100);
    w.node.set_recovery(knobs.repair);
    let handles: Vec<_> = w.node.tcp_handles().collect();
    for handle in handles {
        let socket: &mut tcp::Socket = w.server_sockets.get_mut(handle);
        socket.set_nagle_enabled(knobs.nagle);
    }
    w
}

fn run<const SLOTS: usize, const BUF: usize>(
    client: Client,
    seed: u64,
    bytes: usize,
    knobs: Knobs,
) -> Outcome {
    let mut w = world::<SLOTS, BUF>(seed, knobs);
    let data = pattern(bytes);
    match client {
        Client::Linux => {
            let mut peer = LinuxPeer::new(PeerConfig::LINUX, SERVER_V4, data, seed as u32);
            w.run_wire(&mut peer, LIMIT, |_, p| p.finished());
            let done = peer.echo_done_at;
            Outcome {
                bps: done.map_or(0.0, |t| {
                    bytes as f64 * 8.0 / (t.total_micros() as f64 / 1e6)
                }),
                longest_gap: peer.longest_gap(w.now),
                finished: done.is_some() && !peer.mismatch,
            }
        }
        Client::Smoltcp => {
            let mut run = TcpRun::new::<BUF, BUF>(
                &mut w.client_sockets,
                TcpClientConfig {
                    timeout: LIMIT,
                    half_close: false,
                },
                server_v4(),
                41000,
                data,
            );
            let mut last = (Instant::ZERO, 0usize);
            let mut gap = Duration::ZERO;
            let end = Instant::ZERO + LIMIT;
            while w.now < end && !run.finished() {
                let moved = w.step(&mut [&mut run]);
                let verified = run.client.verified();
                if verified != last.1 {
                    gap = gap.max(w.now - last.0);
                    last = (w.now, verified);
                }
                // The world's own clock rule, one round at a time (so progress is gauged).
                w.now = if moved || !w.link.is_idle() {
                    w.now + w.step
                } else {
                    let next = [w.link.next_release(), run.client.poll_at()]
                        .into_iter()
                        .flatten()
                        .min();
                    next.map_or(w.now + w.step, |t| t.max(w.now + w.step))
                };
            }
            let ok = matches!(run.outcome(), Some(smolecho::TcpOutcome::Echoed { bytes: b, .. }) if b == bytes);
            Outcome {
                bps: if ok {
                    bytes as f64 * 8.0 / (last.0.total_micros() as f64 / 1e6)
                } else {
                    0.0
                },
                longest_gap: if ok { gap } else { gap.max(w.now - last.0) },
                finished: ok,
            }
        }
    }
}

fn measure(client: Client, seeds: u64, bytes: usize, knobs: Knobs) -> (f64, Duration, u64) {
    let mut rates = Vec::new();
    let mut worst = Duration::ZERO;
    let mut unfinished = 0;
    for seed in 1..=seeds {
        let o = match knobs.buffers {
            Buffers::Host => run::<1, { 128 * 1024 }>(client, seed, bytes, knobs),
            Buffers::Small => run::<1, { 16 * 1024 }>(client, seed, bytes, knobs),
            // examples/qemu-mps2/src/net.rs: 4 slots of 2 KiB + 2 KiB.
            Buffers::Firmware => run::<4, 2048>(client, seed, bytes, knobs),
        };
        rates.push(o.bps);
        worst = worst.max(o.longest_gap);
        unfinished += u64::from(!o.finished);
    }
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], worst, unfinished)
}

fn usage() -> ExitCode {
    eprintln!("usage: sim_liveness run [SEEDS] [MIB]   (see benches/sim_liveness.sh)");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("run") {
        return usage();
    }
    let seeds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let build = std::env::var("SIM_LIVENESS_BUILD").unwrap_or_else(|_| "default".into());
    let firmware = Knobs {
        buffers: Buffers::Firmware,
        ..DEFAULT
    };
    let rows: [(&str, Knobs); 7] = [
        ("default (repair, ack 10 ms, no Nagle, 128 KiB)", DEFAULT),
        (
            "repair off",
            Knobs {
                repair: false,
                ..DEFAULT
            },
        ),
        (
            "ack delay none",
            Knobs {
                ack_delay: None,
                ..DEFAULT
            },
        ),
        (
            "Nagle on",
            Knobs {
                nagle: true,
                ..DEFAULT
            },
        ),
        (
            "16 KiB buffers",
            Knobs {
                buffers: Buffers::Small,
                ..DEFAULT
            },
        ),
        ("firmware buffers (4 x 2 KiB)", firmware),
        (
            "firmware buffers, repair off",
            Knobs {
                repair: false,
                ..firmware
            },
        ),
    ];
    println!("build={build} seeds={seeds} mib={mib} (throughput: median; stall: worst seed)");
    for (client, name) in [(Client::Linux, "linux"), (Client::Smoltcp, "smoltcp")] {
        // The firmware rows are about its server against a Linux client.
        let rows: Vec<_> = rows
            .iter()
            .filter(|(_, k)| client == Client::Linux || k.buffers != Buffers::Firmware)
            .collect();
        let results: Vec<_> = rows
            .iter()
            .map(|(_, knobs)| measure(client, seeds, mib << 20, *knobs))
            .collect();
        let base = results[0].0;
        for ((label, _), (bps, gap, unfinished)) in rows.iter().zip(results) {
            println!(
                "build={build} client={name:<7} knobs={label:<48} mbit_s={:>7.1} ratio={:>5.2} \
                 longest_stall_ms={:>6} unfinished={unfinished}",
                bps / 1e6,
                if base > 0.0 { bps / base } else { 0.0 },
                gap.total_millis(),
            );
        }
    }
    ExitCode::SUCCESS
}
