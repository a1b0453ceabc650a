//! `tap_server` over an impaired link (issue 9): the Linux kernel's TCP as the client, frames
//! lost, duplicated, corrupted and reordered in both directions by the user-space relay of
//! `tests/netns/impair.rs` (the benchmark `benches/impaired.sh` uses the same relay). The
//! cases check liveness, not only correctness: no stall over a bound, no client reset.
//!
//! Each case runs in its own network namespace (`tests/netns/`: `unshare --net`, bounded in
//! time, its process group killed at the end), wired as
//!
//! ```text
//! kernel TCP, vc 10.77.9.1/24 --veth-- vr [relay, in this process] tapS -- tap_server 10.77.9.2
//! ```
//!
//! `vr` and `tapS` have no address, IPv6 is off, and `arp_ignore=1` keeps the kernel from
//! answering tap_server's ARP on `tapS` for the address it owns on `vc`, so every frame
//! between the two crosses the relay. Checksum offload and TSO/GSO are off on `vc`
//! (`ethtool`): the relay reads whole, checksummed frames.
//!
//! Needs root, `ethtool` and the example binaries; run with:
//!
//! ```text
//! cargo build --release --examples
//! sudo -E CI=true cargo test --release --test tap_impaired -- --ignored --test-threads=1
//! ```
//!
//! (`.ci/20-tap.sh` does this.) Without root the cases skip loudly, except with `CI=true`,
//! where they fail. The relay's frame helpers are also checked without root (the plain tests
//! at the end).

#[path = "netns/impair.rs"]
mod impair;
mod netns;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use impair::{Impairment, Relay};
use netns::*;

const SERVER: &str = "10.77.9.2";
/// How long each client of the crowd keeps its connection after its echo is back. A real
/// client does not close the instant it has its answer; 300 ms (as the crowd cases of
/// tests/tap_netns.rs) keeps every slot busy while further SYNs wait, which is when the
/// SYN-flood defence judges half-open slots. Without a hold the crowd is through before any
/// handshake's retransmission timer fires, and resets are rare.
const CLIENT_HOLD: Duration = Duration::from_millis(300);
/// Transfers of the reorder case and crowds of the crowd case: each alone meets the failure
/// on main in only some runs (both are races with the retransmission timers), so a case
/// repeats it on the same server to fail reliably there while staying well under a minute
/// once fixed.
const REORDER_TRANSFERS: u8 = 2;
const CROWDS: u8 = 3;

/// Wire the namespace (see the module docs), start the relay with `profile` and `seed`, and
/// tap_server with `args`.
fn impaired_link(profile: &str, seed: u64, args: &[&str]) -> (Relay, Server) {
    sh(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
        net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.default.arp_ignore=1",
    );
    sh(
        "ip link add vc type veth peer name vr && ip tuntap add dev tapS mode tap && \
        ip link set vc up && ip link set vr up && ip link set tapS up && \
        ip addr add 10.77.9.1/24 dev vc",
    );
    let ethtool = sh_output(
        "ethtool -K vc tx off tso off gso off gro off",
        Duration::from_secs(10),
    );
    assert!(
        ethtool.status.success(),
        "ethtool -K vc ... failed (is ethtool installed? .ci/20-tap.sh installs it): {}",
        String::from_utf8_lossy(&ethtool.stderr)
    );
    let imp = Impairment::profile(profile).expect("a known profile");
    let relay = Relay::start("vr", "tapS", imp, seed).expect("start the relay");
    println!("impaired link: {profile} ({imp}), seed {seed}");
    let mut full = vec!["--tap", "tapS", "--ip", "10.77.9.2/24"];
    full.extend_from_slice(args);
    (relay, Server::start(&full))
}

/// What one bulk echo saw.
struct Bulk {
    took: Duration,
    longest_gap: Duration,
}

/// Echo `total` bytes through one connection, every byte checked. A read that waits
/// `stall_bound` without a byte fails the case at once (a stall over the bound), as does not
/// finishing within `limit`.
fn bulk_echo(total: usize, stall_bound: Duration, limit: Duration) -> Bulk {
    let t0 = Instant::now();
    let stream = TcpStream::connect_timeout(&endpoint(SERVER, PORT), Duration::from_secs(10))
        .expect("connect (the kernel retries a lost SYN)");
    stream.set_read_timeout(Some(stall_bound)).expect("timeout");
    stream
        .set_write_timeout(Some(limit))
        .expect("write timeout");
    let mut tx = stream.try_clone().expect("clone");
    let writer = thread::spawn(move || -> std::io::Result<()> {
        let mut pattern = Pattern(0x5EED_0009);
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len());
            pattern.fill(&mut buf[..n]);
            tx.write_all(&buf[..n])?;
            left -= n;
        }
        tx.shutdown(Shutdown::Write)
    });
    let mut rx = stream;
    let mut expected = Pattern(0x5EED_0009);
    let mut want = vec![0u8; 64 * 1024];
    let mut got = vec![0u8; 64 * 1024];
    let (mut received, mut checked) = (0usize, 0usize);
    let mut last = Instant::now();
    let mut longest_gap = Duration::ZERO;
    while received < total {
        assert!(
            t0.elapsed() < limit,
            "bulk echo not done within {limit:?}: {received} of {total} bytes"
        );
        let n = match rx.read(&mut got[received - checked..]) {
            Ok(0) => panic!("EOF after {received} of {total} bytes"),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "STALL: no echoed byte for {stall_bound:?} after {received} of {total} bytes \
                 ({:.1?} into the transfer)",
                t0.elapsed()
            ),
            Err(e) => panic!("echo failed after {received} of {total} bytes: {e}"),
        };
        longest_gap = longest_gap.max(last.elapsed());
        last = Instant::now();
        received += n;
        // Check whole chunks of the pattern as they fill up.
        let pending = received - checked;
        if pending == got.len() || received == total {
            expected.fill(&mut want[..pending]);
            if let Some(at) = (0..pending).find(|&i| got[i] != want[i]) {
                panic!("echo differs at byte {}", checked + at);
            }
            checked = received;
        }
    }
    rx.set_read_timeout(Some(stall_bound)).expect("timeout");
    let mut tail = [0u8; 1];
    match rx.read(&mut tail) {
        Ok(0) => {}
        Ok(_) => panic!("bytes beyond the echo"),
        Err(e) => panic!("the server's FIN did not come: {e}"),
    }
    writer.join().expect("writer").expect("write");
    Bulk {
        took: t0.elapsed(),
        longest_gap,
    }
}

/// How one client of the crowd ended.
enum Outcome {
    Served,
    Reset(String),
    Failed(String),
}

/// One client: connect, echo `bytes` of its own pattern, hold the connection `hold`,
/// half-close, wait for the FIN.
fn client(id: u64, bytes: usize, hold: Duration, deadline: Instant) -> Outcome {
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let fail = |what: &str, e: std::io::Error| {
        let m = format!("client {id}: {what}: {e}");
        match e.kind() {
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Outcome::Reset(m)
            }
            _ => Outcome::Failed(m),
        }
    };
    let mut s = match TcpStream::connect_timeout(&endpoint(SERVER, PORT), left()) {
        Ok(s) => s,
        Err(e) => return fail("connect", e),
    };
    let mut msg = vec![0u8; bytes];
    Pattern(id + 1).fill(&mut msg);
    let mut echo = vec![0u8; bytes];
    let io = s
        .set_read_timeout(Some(left()))
        .and_then(|()| s.set_write_timeout(Some(left())))
        .and_then(|()| s.write_all(&msg))
        .and_then(|()| s.read_exact(&mut echo))
        .and_then(|()| {
            thread::sleep(hold);
            s.shutdown(Shutdown::Write)
        });
    if let Err(e) = io {
        return fail("echo", e);
    }
    if echo != msg {
        return Outcome::Failed(format!("client {id}: echo differs"));
    }
    let _ = s.set_read_timeout(Some(left()));
    match s.read(&mut echo[..1]) {
        Ok(0) => Outcome::Served,
        Ok(_) => Outcome::Failed(format!("client {id}: bytes after the echo")),
        Err(e) => fail("waiting for the FIN", e),
    }
}

/// Reordering only (0.2-0.6 ms random delay per frame, no loss): 20 MB echoed byte-exact with
/// no gap of 2 s or more between echoed bytes (issue 9's done criterion), twice, each on a new
/// connection (one transfer alone meets a stall on main in about one run of three). Nothing
/// is lost, so any retransmission timeout is a stall of the receiver's own making.
#[test]
#[ignore = "needs root, ethtool and the example binaries; run by .ci/20-tap.sh"]
fn reorder_link_20_mb_echo_without_a_stall() {
    in_netns(
        "reorder_link_20_mb_echo_without_a_stall",
        Duration::from_secs(100),
        false,
        || {
            let (relay, server) = impaired_link("reorder", 9, &[]);
            for transfer in 1..=REORDER_TRANSFERS {
                let b = bulk_echo(20_000_000, Duration::from_secs(2), Duration::from_secs(40));
                println!(
                    "reorder, transfer {transfer}: 20 MB echoed in {:.2?} ({:.1} Mbit/s), \
                     longest gap {:.2?}",
                    b.took,
                    20e6 * 8.0 / b.took.as_secs_f64() / 1e6,
                    b.longest_gap
                );
            }
            let report = relay.stop();
            println!("{}", report.lines("vr", "tapS"));
            let c = server.stop();
            assert_eq!(
                c.get("tcp.bytes_out"),
                20_000_000 * u64::from(REORDER_TRANSFERS)
            );
        },
    );
}

/// The mix link (2 % loss, 1 % duplicates, 0.5 % corrupted, reordering): 32 clients at once
/// on 8 slots, 4 KiB echoed by each and the connection held 300 ms: every one served, none
/// reset, within 45 s; three crowds in a row on the same server (one alone meets a reset on
/// main in about one run of three to two of three). Loss keeps handshakes half-open for an
/// RTO (1 s in smoltcp); a SYN-flood defence that recycles such a slot resets a client that
/// believes it is connected (issue 9).
#[test]
#[ignore = "needs root, ethtool and the example binaries; run by .ci/20-tap.sh"]
fn mix_link_32_clients_on_8_slots_all_served_none_reset() {
    in_netns(
        "mix_link_32_clients_on_8_slots_all_served_none_reset",
        Duration::from_secs(170),
        false,
        || {
            let (relay, server) = impaired_link("mix", 32, &["--slots", "8"]);
            for crowd in 1..=CROWDS {
                let deadline = Instant::now() + Duration::from_secs(45);
                let start = Arc::new(Barrier::new(32));
                let (tx, rx) = mpsc::channel();
                for id in 0..32u64 {
                    let (start, tx) = (Arc::clone(&start), tx.clone());
                    thread::spawn(move || {
                        start.wait();
                        let _ = tx.send(client(id, 4096, CLIENT_HOLD, deadline));
                    });
                }
                drop(tx);
                let t0 = Instant::now();
                let outcomes: Vec<Outcome> = rx.iter().take(32).collect();
                let took = t0.elapsed();
                let served = outcomes
                    .iter()
                    .filter(|o| matches!(o, Outcome::Served))
                    .count();
                let reset: Vec<&String> = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        Outcome::Reset(m) => Some(m),
                        _ => None,
                    })
                    .collect();
                let failed: Vec<&String> = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        Outcome::Failed(m) => Some(m),
                        _ => None,
                    })
                    .collect();
                println!(
                    "mix, crowd {crowd}: 32 clients on 8 slots: {served} served, {} reset, {} \
                     failed, in {took:.1?}",
                    reset.len(),
                    failed.len()
                );
                assert!(
                    reset.is_empty() && failed.is_empty() && served == 32,
                    "crowd {crowd}: {served} of 32 served; reset: {reset:?}; failed: {failed:?}"
                );
            }
            let report = relay.stop();
            println!("{}", report.lines("vr", "tapS"));
            let c = server.stop();
            assert_eq!(c.get("tcp.bytes_out"), u64::from(CROWDS) * 32 * 4096);
        },
    );
}

/// The mix link: 1 MB echoed byte-exact, within 40 s, and no gap of 8 s or more. smoltcp's
/// retransmission timeout starts at 1 s at the least and doubles: two lost retransmissions
/// of one segment in a row cost 1 + 2 + 4 = 7 s, which the loss rate makes rare (about 0.1 %
/// of runs) but possible; a third is far rarer. A longer silence is a stall.
#[test]
#[ignore = "needs root, ethtool and the example binaries; run by .ci/20-tap.sh"]
fn mix_link_bulk_echo_exact_without_a_long_stall() {
    in_netns(
        "mix_link_bulk_echo_exact_without_a_long_stall",
        Duration::from_secs(60),
        false,
        || {
            let (relay, server) = impaired_link("mix", 5, &[]);
            let b = bulk_echo(1_000_000, Duration::from_secs(8), Duration::from_secs(40));
            let report = relay.stop();
            println!("{}", report.lines("vr", "tapS"));
            assert!(
                report.a_to_b.dropped > 0 && report.b_to_a.corrupted + report.a_to_b.corrupted > 0,
                "the link impaired frames"
            );
            println!(
                "mix: 1 MB echoed in {:.2?} ({:.2} Mbit/s), longest gap {:.2?}",
                b.took,
                8.0 / b.took.as_secs_f64(),
                b.longest_gap
            );
            let c = server.stop();
            assert_eq!(c.get("tcp.bytes_out"), 1_000_000);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The relay's frame helpers, without root
// ---------------------------------------------------------------------------------------------

fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; impair::ETH_HDR];
    f[12] = 0x08;
    let total = 20 + 20 + payload.len();
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    let mut tcp = [0u8; 20];
    tcp[12] = 0x50;
    f.extend_from_slice(&tcp);
    f.extend_from_slice(payload);
    f
}

/// The one's-complement sum over pseudo-header and segment of a correct frame is 0xffff.
fn checksum_verifies(frame: &[u8]) -> bool {
    let (_, start, end, pseudo) = impair::transport(frame).expect("an IP frame");
    let mut sum = u64::from(pseudo);
    for c in frame[start..end].chunks(2) {
        sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[test]
fn relay_completes_a_partial_checksum_and_a_flipped_byte_breaks_it() {
    let mut f = tcp_frame(b"hello, odd length");
    assert!(!checksum_verifies(&f), "the frame starts with no checksum");
    assert!(impair::complete_checksum(&mut f));
    assert!(checksum_verifies(&f));
    let (start, end) = impair::corruptible(&f).expect("TCP is corruptible");
    assert_eq!((start, end), (impair::ETH_HDR + 20, f.len()));
    f[start + (end - start) / 2] ^= 0x40;
    assert!(!checksum_verifies(&f));
}

#[test]
fn relay_never_corrupts_what_no_checksum_covers() {
    let mut arp = vec![0u8; 60];
    arp[12] = 0x08;
    arp[13] = 0x06;
    assert!(impair::corruptible(&arp).is_none(), "ARP");
    let mut udp = tcp_frame(&[0u8; 8]);
    udp[impair::ETH_HDR + 9] = 17;
    assert!(
        impair::corruptible(&udp).is_none(),
        "IPv4 UDP without a checksum"
    );
}

#[test]
fn relay_random_stream_is_seeded_and_rates_hold() {
    let draw = |seed| {
        let mut r = impair::Rng(seed);
        (0..8).map(|_| r.below(1000)).collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
    let mut r = impair::Rng(1);
    let hits = (0..100_000).filter(|_| r.chance(20_000)).count();
    assert!((1_700..2_300).contains(&hits), "2 % of 100000: {hits}");
    let mix = Impairment::profile("mix").expect("mix");
    assert_eq!(
        (mix.loss_ppm, mix.dup_ppm, mix.corrupt_ppm),
        (20_000, 10_000, 5_000)
    );
    assert_eq!(mix.delay_min, Duration::from_micros(200));
    assert_eq!(mix.delay_max, Duration::from_micros(600));
}
