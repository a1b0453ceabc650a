//! Target `sim`: echo clients over the simulated link with a fuzzer-chosen schedule.
//!
//! The input picks the node's settings, up to four TCP echo clients (message length, IPv4 or
//! IPv6, half-close, start round, an optional early abort) and up to three UDP echo clients
//! (datagram length, IP version, start round), then two streams the run consumes as it goes:
//! one fault per frame crossing the link (pass, drop, duplicate, delay by some rounds, flip
//! one bit: see [`corrupt`] for how checksums are modelled) and one clock step per round
//! (1 ms to a minute). When a stream runs out, frames pass and the clock jumps to the next
//! deadline whenever the link is idle (1 ms per round otherwise).
//!
//! Checked:
//! - every TCP segment the node sends carries exactly the client's bytes at that offset
//!   (checked on the wire, before faults), and every UDP datagram it sends equals one that a
//!   client sent;
//! - no TCP client ends with `Mismatch` or `Truncated`; one that ends `Echoed` got back
//!   exactly as many bytes as it sent;
//! - without faults, early aborts and clock jumps, every client succeeds;
//! - the counters add up after every round, and after the run (past every timeout) every
//!   slot is listening again.

use std::collections::{HashMap, VecDeque};

use arbitrary::{Arbitrary, Unstructured};
use smolecho::fuzzing::RST_GRACE;
use smolecho::smoltcp::socket::tcp;
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::IpEndpoint;
use smolecho::{
    Overflow, Sockets, TcpClientConfig, TcpClientStorage, TcpConfig, TcpEchoClient, TcpOutcome,
    UdpClientConfig, UdpClientStorage, UdpEchoClient, UdpOutcome,
};

use crate::net::{self, PORT, Server, ServerStore, Wire};

const TCP_CLIENTS: usize = 4;
const UDP_CLIENTS: usize = 3;
const CLIENT_RX: usize = 2048;
const CLIENT_TX: usize = 2048;
/// Longest TCP message.
const MAX_MESSAGE: usize = 16 * 1024;
/// Longest UDP datagram (the node's UDP buffer is 1500 bytes).
const MAX_DATAGRAM: usize = 1400;
/// Rounds of the main phase.
const MAX_ROUNDS: usize = 3000;
/// Rounds allowed to settle at the end.
const SETTLE_ROUNDS: usize = 4000;
/// How long a TCP client may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Arbitrary)]
struct TcpPlan {
    len: u16,
    v6: bool,
    half_close: bool,
    start: u8,
    /// Abort the client's socket at this round.
    abort_at: Option<u16>,
}

#[derive(Debug, Arbitrary)]
struct UdpPlan {
    len: u16,
    v6: bool,
    start: u8,
}

#[derive(Debug, Arbitrary)]
struct Setup {
    refuse: bool,
    idle_secs: u8,
    handshake_secs: u8,
    ack_delay: bool,
    tcp: [Option<TcpPlan>; TCP_CLIENTS],
    udp: [Option<UdpPlan>; UDP_CLIENTS],
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Fault {
    Pass,
    Drop,
    Duplicate,
    /// Hold the frame back for 1 to 16 rounds (reordering).
    Delay(u8),
    /// Flip one bit (the position is taken modulo the frame length).
    Corrupt(u16),
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Step {
    Ms(u8),
    Secs(u8),
}

/// What one run saw.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub rounds: usize,
    pub tcp_outcomes: Vec<Option<TcpOutcome>>,
    pub udp_outcomes: Vec<Option<UdpOutcome>>,
    pub counters: smolecho::TcpCounters,
    pub udp: smolecho::UdpCounters,
    pub faults: usize,
    /// Frames checked against the clients' messages.
    pub checked_segments: usize,
}

/// Which message the node's segments to a client port must match, from which sequence number.
struct Expect {
    message: usize,
    /// The server's initial sequence numbers + 1 from its SYN-ACKs. A duplicated SYN can
    /// reach two listening slots (smoltcp hands a SYN to the first socket that accepts it,
    /// and a listener accepts any), so one client port may see several.
    bases: Vec<u32>,
}

/// Faulty delivery: frames the fault stream is holding back.
struct Delayed {
    to_server: bool,
    rounds: u8,
    frame: Vec<u8>,
}

/// Run one input; panics when a property fails.
pub fn run(data: &[u8]) -> Report {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return Report::default();
    };
    // The rest of the input: fault and clock streams, interleaved byte-wise by Arbitrary.
    let mut faults: VecDeque<Fault> = VecDeque::new();
    let mut steps: VecDeque<Step> = VecDeque::new();
    while !u.is_empty() {
        let Ok(which) = bool::arbitrary(&mut u) else {
            break;
        };
        let pushed = if which {
            Fault::arbitrary(&mut u).map(|f| faults.push_back(f))
        } else {
            Step::arbitrary(&mut u).map(|s| steps.push_back(s))
        };
        if pushed.is_err() {
            break;
        }
    }

    if crate::frames::debug() {
        eprintln!("{setup:#?}\nfaults {faults:?}\nsteps {steps:?}");
    }
    let config = TcpConfig {
        overflow: if setup.refuse {
            Overflow::Refuse
        } else {
            Overflow::Defer
        },
        idle_timeout: Some(Duration::from_secs(1 + u64::from(setup.idle_secs % 16))),
        handshake_timeout: Some(Duration::from_secs(1 + u64::from(setup.handshake_secs % 8))),
        ack_delay: setup.ack_delay.then(|| Duration::from_millis(10)),
        ..TcpConfig::on_port(PORT)
    };

    let mut now = Instant::from_secs(1);
    let mut wire = Wire::new();
    let mut store = ServerStore::boxed();
    let mut mem = net::socket_mem(8);
    let mut server = Server::new(&mut store, &mut mem, config, &mut wire.srv_link, now);

    // Messages, then the client storage and sockets that borrow them.
    let tcp_plans: Vec<&TcpPlan> = setup.tcp.iter().flatten().collect();
    let udp_plans: Vec<&UdpPlan> = setup.udp.iter().flatten().collect();
    let tcp_msgs: Vec<Vec<u8>> = tcp_plans
        .iter()
        .enumerate()
        .map(|(i, p)| net::pattern(usize::from(p.len) % (MAX_MESSAGE + 1), i as u32))
        .collect();
    let udp_msgs: Vec<Vec<u8>> = udp_plans
        .iter()
        .enumerate()
        .map(|(i, p)| net::pattern(1 + usize::from(p.len) % MAX_DATAGRAM, 100 + i as u32))
        .collect();
    let mut tcp_store: Vec<TcpClientStorage<CLIENT_RX, CLIENT_TX>> = (0..tcp_plans.len())
        .map(|_| TcpClientStorage::new())
        .collect();
    let mut udp_store: Vec<UdpClientStorage<2, 1500>> = (0..udp_plans.len())
        .map(|_| UdpClientStorage::new())
        .collect();
    let mut cmem = net::socket_mem(TCP_CLIENTS + UDP_CLIENTS);
    let mut csockets = Sockets::new(&mut cmem);
    let mut tcp_clients: Vec<TcpEchoClient<'_>> = tcp_store
        .iter_mut()
        .zip(&tcp_plans)
        .map(|(s, p)| {
            let cfg = TcpClientConfig {
                timeout: CLIENT_TIMEOUT,
                half_close: p.half_close,
            };
            TcpEchoClient::new(cfg, s, &mut csockets).expect("client fits")
        })
        .collect();
    let mut udp_clients: Vec<UdpEchoClient<'_>> = udp_store
        .iter_mut()
        .enumerate()
        .map(|(i, s)| {
            UdpEchoClient::new(UdpClientConfig::DEFAULT, 30000 + i as u16, s, &mut csockets)
                .expect("client fits")
        })
        .collect();
    let mut client_iface = net::client_iface(&mut wire.cli_link, now);

    let tcp_port = |i: usize| 40000 + i as u16;
    let mut expect: HashMap<u16, Expect> = (0..tcp_plans.len())
        .map(|i| {
            (
                tcp_port(i),
                Expect {
                    message: i,
                    bases: Vec::new(),
                },
            )
        })
        .collect();
    let mut tcp_started = vec![false; tcp_plans.len()];
    let mut udp_started = vec![false; udp_plans.len()];
    let mut delayed: Vec<Delayed> = Vec::new();
    let mut report = Report::default();
    // Anything that may make a client fail legitimately.
    let mut disturbed = false;
    let mut checked = 0usize;

    // Every frame the server sends is checked against what the clients sent.
    let mut check_server_frame = |f: &[u8], expect: &mut HashMap<u16, Expect>| {
        if let Some(seg) = net::parse_tcp(f) {
            if crate::frames::debug() {
                eprintln!("server sends {}", crate::frames::brief(f));
            }
            if seg.src_port != PORT {
                return;
            }
            let Some(e) = expect.get_mut(&seg.dst_port) else {
                return;
            };
            if seg.syn {
                let base = seg.seq.wrapping_add(1);
                if !e.bases.contains(&base) {
                    e.bases.push(base);
                }
                return;
            }
            if seg.payload.is_empty() || seg.rst {
                return;
            }
            assert!(!e.bases.is_empty(), "data before any SYN-ACK");
            let message = &tcp_msgs[e.message];
            let fits = |base: &u32| {
                let offset = seg.seq.wrapping_sub(*base) as usize;
                message.get(offset..offset + seg.payload.len()) == Some(seg.payload)
            };
            assert!(
                e.bases.iter().any(fits),
                "client {} got {} bytes (seq {}) that it did not send there \
                 (message of {} bytes, server ISN+1 {:?})",
                e.message,
                seg.payload.len(),
                seg.seq,
                message.len(),
                e.bases
            );
            checked += 1;
        } else if let Some((_, src, _, payload)) = net::parse_udp(f)
            && src == PORT
        {
            assert!(
                udp_msgs.iter().any(|m| m.as_slice() == payload),
                "a UDP echo of {} bytes that no client sent",
                payload.len()
            );
            checked += 1;
        }
    };

    let mut round = 0usize;
    let all_done =
        |tcp: &[TcpEchoClient<'_>], udp: &[UdpEchoClient<'_>], ts: &[bool], us: &[bool]| {
            ts.iter().all(|s| *s)
                && us.iter().all(|s| *s)
                && tcp.iter().all(|c| c.is_idle())
                && udp.iter().all(|c| !c.is_waiting())
        };

    // The main phase, then the settling phase (no faults, clock to the next deadline) until
    // every client is done and every timeout has passed.
    let mut settle_end: Option<Instant> = None;
    loop {
        round += 1;
        let settling = settle_end.is_some();
        if settling {
            assert!(
                round <= MAX_ROUNDS + settle_rounds(),
                "no quiet after {} settling rounds: {:?}",
                settle_rounds(),
                server.slot_states()
            );
        }

        // Start and abort clients.
        for (i, plan) in tcp_plans.iter().enumerate() {
            if !tcp_started[i] && round >= usize::from(plan.start) {
                let remote = IpEndpoint::new(net::server_ip(plan.v6), PORT);
                tcp_clients[i]
                    .connect(
                        now,
                        &mut client_iface,
                        &mut csockets,
                        remote,
                        tcp_port(i),
                        &tcp_msgs[i],
                    )
                    .expect("connect");
                tcp_started[i] = true;
            }
            if plan.abort_at.is_some_and(|r| usize::from(r) == round) {
                csockets
                    .get_mut::<tcp::Socket>(tcp_clients[i].handle())
                    .abort();
                disturbed = true;
            }
        }
        for (i, plan) in udp_plans.iter().enumerate() {
            if !udp_started[i] && round >= usize::from(plan.start) {
                let remote = IpEndpoint::new(net::server_ip(plan.v6), PORT);
                udp_clients[i]
                    .send(now, &mut csockets, remote, &udp_msgs[i])
                    .expect("send");
                udp_started[i] = true;
            }
        }

        // Deliver (with faults), poll the node, poll the client host and its clients.
        let mut released = Vec::new();
        delayed.retain_mut(|d| {
            d.rounds = d.rounds.saturating_sub(1);
            if d.rounds == 0 {
                released.push((d.to_server, std::mem::take(&mut d.frame)));
                false
            } else {
                true
            }
        });
        for (to_server, frame) in released {
            if to_server {
                wire.to_srv.push_back(frame);
            } else {
                wire.to_cli.push_back(frame);
            }
        }
        wire.deliver();
        server.poll(now, &mut wire.srv_link);
        wire.collect_from_server(now, |f| check_server_frame(f, &mut expect));
        net::poll_client(&mut client_iface, &mut wire.cli_link, &mut csockets, now);
        for c in tcp_clients.iter_mut() {
            c.service(now, &mut csockets);
        }
        for c in udp_clients.iter_mut() {
            c.service(now, &mut csockets);
        }
        wire.collect_from_client(now, |f| {
            if crate::frames::debug() {
                eprintln!("client sends {}", crate::frames::brief(f));
            }
        });
        server.check_counters();

        // Faults on what was just sent.
        if !settling {
            for to_server in [true, false] {
                let queue = if to_server {
                    &mut wire.to_srv
                } else {
                    &mut wire.to_cli
                };
                let frames: Vec<Vec<u8>> = queue.drain(..).collect();
                for mut frame in frames {
                    let fault = faults.pop_front().unwrap_or(Fault::Pass);
                    if !matches!(fault, Fault::Pass) {
                        report.faults += 1;
                        disturbed = true;
                    }
                    match fault {
                        Fault::Pass => queue.push_back(frame),
                        Fault::Drop => {}
                        Fault::Duplicate => {
                            queue.push_back(frame.clone());
                            queue.push_back(frame);
                        }
                        Fault::Delay(r) => delayed.push(Delayed {
                            to_server,
                            rounds: 1 + r % 16,
                            frame,
                        }),
                        Fault::Corrupt(bit) => {
                            if corrupt(&mut frame, bit) {
                                queue.push_back(frame);
                            }
                        }
                    }
                }
            }
        }

        // The clock.
        let done = all_done(&tcp_clients, &udp_clients, &tcp_started, &udp_started);
        if settle_end.is_none() && (done || round >= MAX_ROUNDS) {
            // Flush what the faults still hold, then run past every timeout.
            for d in delayed.drain(..) {
                if d.to_server {
                    wire.to_srv.push_back(d.frame);
                } else {
                    wire.to_cli.push_back(d.frame);
                }
            }
            let span = config.idle_timeout.unwrap_or_default()
                + config.handshake_timeout.unwrap_or_default()
                + CLIENT_TIMEOUT
                + RST_GRACE
                + RST_GRACE
                + Duration::from_secs(2);
            settle_end = Some(now + span);
        }
        let tick = now + Duration::from_millis(1);
        // The next instant anything needs attention, when nothing is on the wire.
        let next = if wire.is_idle() && delayed.is_empty() {
            let mut next = server.poll_at(now);
            let mut merge = |t: Option<Instant>| {
                next = match (next, t) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            merge(client_iface.poll_at(now, &csockets));
            for c in &tcp_clients {
                merge(c.poll_at());
            }
            for c in &udp_clients {
                merge(c.poll_at());
            }
            Some(next)
        } else {
            None
        };
        if crate::frames::debug() {
            eprintln!(
                "round {round} at {now}: server poll_at {:?}, client {:?}, next {next:?}, slots {:?}",
                server.poll_at(now),
                client_iface.poll_at(now, &csockets),
                server.slot_states()
            );
        }
        if let Some(end) = settle_end {
            if now > end && done {
                break;
            }
            now = match next {
                None => tick,
                Some(Some(at)) if at > tick => at.min(end + Duration::from_millis(1)),
                Some(Some(_)) => tick,
                Some(None) => end + Duration::from_millis(1),
            };
        } else {
            let unstarted = tcp_started.iter().chain(&udp_started).any(|s| !s);
            now = match steps.pop_front() {
                Some(Step::Ms(ms)) => now + Duration::from_millis(1 + u64::from(ms)),
                Some(Step::Secs(s)) => {
                    if s > 0 {
                        disturbed = true;
                    }
                    now + Duration::from_secs(u64::from(s % 64)) + Duration::from_millis(1)
                }
                // Out of steps: sleep to the next deadline like firmware would, unless a
                // client still has to start (clients start by round).
                None => match next {
                    Some(Some(at)) if at > tick && !unstarted => at,
                    _ => tick,
                },
            };
        }
    }
    report.rounds = round;
    report.checked_segments = checked;

    // Outcomes. With `Overflow::Refuse`, clients beyond the slots are refused by design.
    if setup.refuse && tcp_plans.len() > net::SLOTS {
        disturbed = true;
    }
    for (i, c) in tcp_clients.iter().enumerate() {
        let outcome = c.outcome();
        match outcome {
            Some(TcpOutcome::Mismatch { offset }) => {
                panic!("TCP client {i}: echo differs at byte {offset}")
            }
            Some(TcpOutcome::Truncated { received }) if !tolerate_truncation() => panic!(
                "TCP client {i}: the server closed after {received} of {} bytes",
                tcp_msgs[i].len()
            ),
            Some(TcpOutcome::Echoed { bytes, .. }) => {
                assert_eq!(bytes, tcp_msgs[i].len(), "TCP client {i}")
            }
            _ => {}
        }
        if !disturbed {
            assert!(
                outcome.is_some_and(|o| o.is_ok()),
                "TCP client {i} ({} bytes) failed without any fault: {outcome:?}",
                tcp_msgs[i].len()
            );
        }
        report.tcp_outcomes.push(outcome);
    }
    // UDP may lose datagrams without any fault: the node's UDP buffers are bounded, echoes
    // only leave after the poll's ingress, and smoltcp drops a datagram that finds the
    // receive buffer full before the service sees it. Datagrams from several clients that
    // arrive together can thus be lost, and identical retry timers repeat the collision, so
    // only a lone UDP client must always be served.
    let udp_contention = udp_plans.len() > 1;
    for (i, c) in udp_clients.iter().enumerate() {
        let outcome = c.outcome();
        if !disturbed && !udp_contention {
            assert!(
                outcome.is_some_and(|o| o.is_ok()),
                "UDP client {i} ({} bytes) failed without any fault: {outcome:?}",
                udp_msgs[i].len()
            );
        }
        report.udp_outcomes.push(outcome);
    }
    server.check_counters();
    server.check_all_listening("after the run");
    report.counters = server.node.tcp_counters();
    report.udp = server.node.udp_counters();
    report
}

/// Rounds allowed to settle: a node whose `poll_at` stays in the past without anything to
/// do makes the clock crawl 1 ms per round and trips this bound (the busy-poll of
/// `regressions/sim/crash-poll-at-past-after-syn-pressure`).
/// `SMOLECHO_FUZZ_TOLERATE_BUSY_POLL=1` raises it tenfold so a long campaign can go past that
/// known bug. Never set in CI or the tests.
fn settle_rounds() -> usize {
    static TOLERATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *TOLERATE.get_or_init(|| std::env::var_os("SMOLECHO_FUZZ_TOLERATE_BUSY_POLL").is_some()) {
        10 * SETTLE_ROUNDS
    } else {
        SETTLE_ROUNDS
    }
}

/// `SMOLECHO_FUZZ_TOLERATE_TRUNCATION=1` lets a long campaign go past the known smoltcp bug
/// of `regressions/sim/crash-fin-past-window-truncates-*` (a FIN beyond the receive window is
/// taken, the echo ends early) to look for others. Never set in CI or the tests.
fn tolerate_truncation() -> bool {
    static TOLERATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TOLERATE.get_or_init(|| std::env::var_os("SMOLECHO_FUZZ_TOLERATE_TRUNCATION").is_some())
}

/// Flip one bit of `frame`; returns whether the frame is still delivered.
///
/// cargo-fuzz builds smoltcp with `--cfg fuzzing`, where it skips every checksum check, so the
/// harness plays the checksums' part itself, the same way in every build (a saved input then
/// replays identically on stable): a flipped bit that a checksum covers (anywhere in an IPv4
/// packet; an IPv6 packet's payload length, addresses and payload) loses the frame, as the
/// receiver's check would. A flip in the Ethernet header, in an IPv6 field no checksum covers
/// (version, traffic class, flow label, next header, hop limit) or in a frame without
/// checksums (ARP) is delivered.
fn corrupt(frame: &mut [u8], bit: u16) -> bool {
    if frame.is_empty() {
        return false;
    }
    let at = usize::from(bit / 8) % frame.len();
    frame[at] ^= 1 << (bit % 8);
    if at < 14 || frame.len() < 14 {
        return true;
    }
    match [frame[12], frame[13]] {
        [0x08, 0x00] => false,
        [0x86, 0xdd] => matches!(at - 14, 0..=3 | 6 | 7),
        _ => true,
    }
}
