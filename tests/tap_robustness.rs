//! Robustness of `tap_server` on a Linux TAP (issue 5): a SYN flood from spoofed addresses
//! (alone and beside a long-lived client), idle connections holding every slot, a client that
//! never reads, malformed frames, a UDP datagram from a neighbour that never answers, and
//! neighbour-cache churn. In every case with a warm-up the server's resident memory must not
//! grow.
//!
//! Same conventions as `tests/tap_netns.rs` (the harness is `tests/netns/`): every case runs
//! in its own network namespace under `unshare --net`, bounded in time, its process group
//! killed at the end. Raw frames (the flood, the malformed frames) are written with an
//! `AF_PACKET` socket onto the TAP inside that namespace (`tests/netns/raw.rs`), so they reach
//! only `tap_server`. Needs root; run with:
//!
//! ```text
//! cargo build --release --examples
//! sudo -E CI=true cargo test --release --test tap_robustness -- --ignored --test-threads=1
//! ```
//!
//! (`.ci/20-tap.sh` does this; one case at a time, so the latency figures are not measured
//! against another case's load.)

mod netns;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use netns::raw::{Junk, Kind, Pacer, RawLink, SERVER_MAC, arp_request, ip, peer, spoofed_syn};
use netns::*;
use smolecho::sim::frames;

// The malformed frames also go through the offload device's own frame checks.
on_both_devices!(malformed_frames_do_not_stop_the_echo);

/// How much `tap_server`'s resident memory may grow after the warm-up. Its memory is fixed
/// (socket buffers in statics, one receive and one transmit frame buffer, a leaked socket
/// table); the warm-up makes all of it resident. What is left may move by a few pages: the
/// stack's deepest call path, stdio's buffer and the allocator's arena for the `stats:`
/// lines. 64 KiB is 16 pages: far below one slot's buffers (256 KiB), which a leak per
/// connection or per frame would pass at once over thousands of them.
const RSS_GROWTH_LIMIT_KIB: u64 = 64;

/// `VmRSS` of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// The server's resident memory after the warm-up, checked again at the end of the case.
struct Memory {
    pid: u32,
    warm: u64,
}

impl Memory {
    fn after_warm_up(server: &Server) -> Self {
        thread::sleep(Duration::from_millis(300));
        let pid = server.pid();
        let warm = rss_kib(pid);
        println!("memory: VmRSS after warm-up {warm} KiB");
        Memory { pid, warm }
    }

    fn check(&self, case: &str) {
        let end = rss_kib(self.pid);
        let growth = end.saturating_sub(self.warm);
        println!(
            "memory ({case}): VmRSS {} KiB after warm-up, {end} KiB at the end: {:+} KiB",
            self.warm,
            end as i64 - self.warm as i64
        );
        assert!(
            growth <= RSS_GROWTH_LIMIT_KIB,
            "{case}: tap_server's resident memory grew by {growth} KiB (from {} to {end} KiB; \
             limit {RSS_GROWTH_LIMIT_KIB} KiB)",
            self.warm
        );
    }
}

/// Make every buffer of the server resident: `slots` connections at once (one per slot)
/// each echo 320 KB, more than its 128 KiB receive and 128 KiB transmit rings, so every
/// page of every ring is written; then 100 UDP datagrams of 1400 bytes (140 KB, more than
/// the 96 KiB UDP rings each way).
fn warm_up(ip: &str, slots: usize) {
    const BYTES: usize = 320_000;
    let t0 = Instant::now();
    let clients: Vec<_> = (0..slots)
        .map(|i| {
            let addr = endpoint(ip, PORT);
            thread::spawn(move || {
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                    .expect("warm-up connect");
                s.set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let mut tx = s.try_clone().expect("clone");
                let mut data = vec![0u8; BYTES];
                Pattern(i as u64 + 11).fill(&mut data);
                let sent = data.clone();
                let writer = thread::spawn(move || tx.write_all(&sent));
                let mut echo = vec![0u8; BYTES];
                let mut rx = s;
                rx.read_exact(&mut echo).expect("warm-up echo");
                writer.join().expect("writer").expect("write");
                assert!(echo == data, "warm-up echo differs");
                rx
            })
        })
        .collect();
    // Hold every connection until all are done, so each had a slot of its own.
    let streams: Vec<TcpStream> = clients
        .into_iter()
        .map(|c| c.join().expect("warm-up client"))
        .collect();
    for mut s in streams {
        s.shutdown(Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("close");
    }
    let bind = if ip.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let udp = UdpSocket::bind(bind).expect("bind");
    udp.connect(endpoint(ip, PORT)).expect("connect");
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let mut echoed = 0;
    for i in 0..100u8 {
        let d = [i; 1400];
        udp.send(&d).expect("send");
        if udp.recv(&mut buf).is_ok_and(|n| n == 1400) {
            echoed += 1;
        }
    }
    assert!(echoed >= 95, "warm-up: {echoed} of 100 UDP echoes");
    println!(
        "warm-up: {slots} x {BYTES} B TCP and 100 x 1400 B UDP in {:.2?}",
        t0.elapsed()
    );
}

/// One echo of `message` on a new connection; returns (connect time, total time).
fn echo_once(
    addr: SocketAddr,
    message: &[u8],
    limit: Duration,
) -> Result<(Duration, Duration), String> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    let connect = t0.elapsed();
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    s.write_all(message).map_err(|e| format!("write: {e}"))?;
    let mut echo = vec![0u8; message.len()];
    s.read_exact(&mut echo).map_err(|e| format!("echo: {e}"))?;
    if echo != message {
        return Err("the echo differs".into());
    }
    let total = t0.elapsed();
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .map_err(|e| format!("close: {e}"))?;
    Ok((connect, total))
}

/// The next `stats:` line the server prints (within `limit`).
fn latest_stats(server: &mut Server, limit: Duration) -> Counters {
    Counters::parse(&server.wait_fresh_line("stats: ", limit))
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

/// The SYN-flood case, with or without a long-lived client that holds a slot and echoes
/// through the whole flood.
fn syn_flood(long_lived: bool) {
    const SYNS: u32 = 20_000;
    const RATE: u64 = 2_000;
    const CONNECT_BOUND: Duration = Duration::from_millis(3500);
    let (v4, v6) = ("10.69.0.1", "fdaa::1");
    let mut server = Server::start(&[
        "--ip",
        "10.69.0.1/16",
        "--ip",
        "fdaa::1/64",
        "--host-ip",
        "10.69.0.100/16",
        "--host-ip",
        "fdaa::100/64",
        "--stats",
        "1",
    ]);
    warm_up(v4, 8);
    let memory = Memory::after_warm_up(&server);
    // A long-lived client that echoes 64 bytes every 200 ms through the whole flood.
    let flood_over = Arc::new(AtomicBool::new(false));
    let steady = long_lived.then(|| {
        let mut s = TcpStream::connect_timeout(&endpoint(v4, PORT), Duration::from_secs(10))
            .expect("connect the long-lived client");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let over = Arc::clone(&flood_over);
        thread::spawn(move || -> Result<(usize, Duration), String> {
            let (mut echoes, mut slowest) = (0usize, Duration::ZERO);
            while !over.load(Ordering::SeqCst) {
                let msg = [echoes as u8; 64];
                let t = Instant::now();
                s.write_all(&msg).map_err(|e| format!("write: {e}"))?;
                let mut echo = [0u8; 64];
                s.read_exact(&mut echo)
                    .map_err(|e| format!("echo {echoes}: {e}"))?;
                if echo != msg {
                    return Err(format!("echo {echoes} differs"));
                }
                slowest = slowest.max(t.elapsed());
                echoes += 1;
                thread::sleep(Duration::from_millis(200));
            }
            s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).map_err(|e| e.to_string())?;
            Ok((echoes, slowest))
        })
    });
    let before = latest_stats(&mut server, Duration::from_secs(3));

    let (sv4, sv6) = (v4.parse().expect("IPv4"), v6.parse().expect("IPv6"));
    let flood_start = Instant::now();
    let flooder = thread::spawn(move || {
        let mut link = RawLink::open("tap0").expect("AF_PACKET socket on tap0");
        let mut pacer = Pacer::new(RATE);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sent = 0u32;
        while sent < SYNS && Instant::now() < deadline {
            pacer.tick();
            link.send(&spoofed_syn(sent, sv4, sv6, PORT))
                .expect("send a SYN");
            sent += 1;
        }
        (sent, link.refused, flood_start.elapsed())
    });
    let clients: Vec<_> = (0..8u32)
        .map(|i| {
            let ip = if i.is_multiple_of(2) { v4 } else { v6 };
            let addr = endpoint(ip, PORT);
            thread::spawn(move || {
                // One a second, from 1 s into the flood to 8 s.
                let at = flood_start + Duration::from_secs(1 + u64::from(i));
                thread::sleep(at.saturating_duration_since(Instant::now()));
                let message = format!("real client {i} during the flood, {:>32}", "");
                (
                    ip,
                    echo_once(addr, message.as_bytes(), Duration::from_secs(15)),
                )
            })
        })
        .collect();
    let results: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    let (sent, refused, took) = flooder.join().expect("flooder");
    flood_over.store(true, Ordering::SeqCst);
    if let Some(steady) = steady {
        let (echoes, slowest) = steady
            .join()
            .expect("long-lived client")
            .unwrap_or_else(|e| panic!("the long-lived client failed during the flood: {e}"));
        println!("long-lived client: {echoes} echoes during the flood, slowest {slowest:.2?}");
    }
    println!(
        "flood: {sent} SYNs in {took:.2?} ({:.0}/s), {refused} refused by the TAP queue",
        f64::from(sent) / took.as_secs_f64()
    );
    let during = latest_stats(&mut server, Duration::from_secs(3));
    for (i, (ip, r)) in results.iter().enumerate() {
        match r {
            Ok((connect, total)) => println!(
                "real client {i} ({ip}): connected in {connect:.2?}, echoed in {total:.2?}"
            ),
            Err(e) => println!("real client {i} ({ip}): FAILED: {e}"),
        }
    }
    assert_eq!(sent, SYNS, "the whole flood was sent");
    for (i, (ip, r)) in results.iter().enumerate() {
        let (connect, _) = r
            .as_ref()
            .unwrap_or_else(|e| panic!("real client {i} ({ip}) not served: {e}"));
        assert!(
            *connect <= CONNECT_BOUND,
            "real client {i} ({ip}) connected only after {connect:?}"
        );
    }
    let recycled = during.get("tcp.half_open_recycled") - before.get("tcp.half_open_recycled");
    let rx = during.get("frames.rx") - before.get("frames.rx");
    println!(
        "server during the flood: {recycled} half-open slots recycled, {} SYNs held, \
         {} handshake timeouts, {rx} frames received",
        during.get("tcp.held_syns") - before.get("tcp.held_syns"),
        during.get("tcp.handshake_timeouts") - before.get("tcp.handshake_timeouts"),
    );
    assert!(
        rx >= u64::from(sent) - refused,
        "the flood reached the server: {rx} frames received, {sent} sent"
    );
    // Every SYN after the first 250 ms (500 of them) finds every slot half-open.
    assert!(
        recycled >= 15_000,
        "the flood's half-open slots were recycled: {recycled}"
    );
    // Afterwards: a new client is served at once.
    thread::sleep(Duration::from_secs(1));
    let (connect, _) = echo_once(
        endpoint(v4, PORT),
        b"after the flood",
        Duration::from_secs(10),
    )
    .expect("a client after the flood");
    println!("after the flood: connected in {connect:.2?}");
    assert!(
        connect < Duration::from_secs(1),
        "after the flood: {connect:?}"
    );
    memory.check("SYN flood");
    let c = server.stop();
    let clients = 8 + 8 + 1 + u64::from(long_lived);
    assert_eq!(
        c.get("tcp.accepted"),
        clients,
        "warm-up, real clients, last one (and the long-lived one)"
    );
    assert_eq!(c.get("tcp.closed"), clients, "all closed gracefully");
    assert_eq!(c.get("tcp.active"), 0);
}

/// SYN flood: 20,000 initial SYNs from 1,000 spoofed addresses (500 IPv4, 500 IPv6, each with
/// its own MAC, inside the server's subnets, so the server asks for them and nobody
/// answers) at 2,000 per second for 10 s, while 8 real kernel clients (4 over IPv4, 4 over
/// IPv6) arrive one per second and echo. Every real client is served; after the flood the
/// server serves at once again; the counters show the half-open slots recycled.
///
/// The bound on a real client's connect: with every slot half-open for 250 ms the server
/// gives a SYN that finds no listener the oldest half-open slot, so a real SYN gets a slot on
/// arrival. Its handshake can still lose that slot when 8 more flood SYNs arrive before the
/// client's ACK (4 ms at this rate), or its SYN can be lost in the TAP's queue; the kernel
/// then retransmits after 1 s (the first four retransmissions are 1 s apart,
/// `tcp_syn_linear_timeouts`). 3.5 s allows three such losses in a row.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn syn_flood_does_not_starve_real_clients() {
    in_netns(
        "syn_flood_does_not_starve_real_clients",
        Duration::from_secs(90),
        false,
        || {
            syn_flood(false);
        },
    );
}

/// The same flood while one long-lived client holds a slot and echoes every 200 ms: every
/// slot but its own is half-open, so the flood must still be recognised, and the 8 real
/// clients served within the same bound; the long-lived client keeps its echo.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn syn_flood_beside_a_long_lived_client_does_not_starve_real_clients() {
    in_netns(
        "syn_flood_beside_a_long_lived_client_does_not_starve_real_clients",
        Duration::from_secs(120),
        false,
        || {
            syn_flood(true);
        },
    );
}

/// A TCP connection from `local` (an address of this namespace) to `remote`, with the
/// kernel's own SYN retransmissions, given up after `limit`.
fn connect_from(local: &str, remote: SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let (std::net::IpAddr::V4(local), SocketAddr::V4(remote)) =
        (local.parse().expect("an address"), remote)
    else {
        panic!("connect_from: IPv4 only");
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket(2); the result is checked, then owned by the TcpStream.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a TCP socket we own; from here the TcpStream closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // A blocking connect gives up at SO_SNDTIMEO.
    stream.set_write_timeout(Some(limit))?;
    let from = sockaddr(local, 0);
    let to = sockaddr(*remote.ip(), remote.port());
    // SAFETY: valid sockaddr_in values and their size, on our socket.
    unsafe {
        if libc::bind(fd, (&raw const from).cast(), len) != 0
            || libc::connect(fd, (&raw const to).cast(), len) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(stream)
}

/// Idle holders against the default 8 slots and Defer, with an idle timeout of
/// `idle_timeout_s`: `HOLDERS` kernel connections from the Linux side's 192.168.69.100 that
/// send nothing, each trying to connect for at most `holder_patience`; once 8 of them hold
/// every slot a new client from `newcomer` (192.168.69.101, another host, or .100, the
/// holders' own) connects and echoes. Returns (connect time, echo time) of the new client
/// and the server's counters.
fn idle_holders(
    holder_patience: Duration,
    idle_timeout_s: u64,
    newcomer: &str,
) -> ((Duration, Duration), Counters) {
    const HOLDERS: usize = 100;
    let idle_timeout = idle_timeout_s.to_string();
    let mut server = Server::start(&["--idle-timeout", &idle_timeout, "--stats", "1"]);
    sh("ip addr add 192.168.69.101/24 dev tap0");
    warm_up(SERVER_V4, 8);
    let memory = Memory::after_warm_up(&server);

    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let holders: Vec<_> = (0..HOLDERS)
        .map(|_| {
            let (stop, connected, ended) = (
                Arc::clone(&stop),
                Arc::clone(&connected),
                Arc::clone(&ended),
            );
            thread::spawn(move || {
                let Ok(mut s) =
                    connect_from("192.168.69.100", endpoint(SERVER_V4, PORT), holder_patience)
                else {
                    return;
                };
                connected.fetch_add(1, Ordering::SeqCst);
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("timeout");
                let mut buf = [0u8; 16];
                // Never send; wait to be dropped (idle timeout, eviction) or told to stop.
                while !stop.load(Ordering::SeqCst) {
                    match s.read(&mut buf) {
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        _ => {
                            ended.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    while connected.load(Ordering::SeqCst) < 8 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the holders did not get the 8 slots"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let full = latest_stats(&mut server, Duration::from_secs(3));
    println!(
        "{} holders connected (each tries for at most {holder_patience:?}), the server has {} \
         active connections",
        connected.load(Ordering::SeqCst),
        full.get("tcp.active")
    );
    assert_eq!(full.get("tcp.active"), 8, "the holders hold every slot");

    let message = b"a real client behind 100 idle holders";
    let start = Instant::now();
    let served = (|| -> Result<(Duration, Duration), String> {
        let mut s = connect_from(newcomer, endpoint(SERVER_V4, PORT), Duration::from_secs(30))
            .map_err(|e| format!("connect: {e}"))?;
        let connect = start.elapsed();
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(message).map_err(|e| format!("write: {e}"))?;
        let mut echo = vec![0u8; message.len()];
        s.read_exact(&mut echo).map_err(|e| format!("echo: {e}"))?;
        if echo != message {
            return Err("the echo differs".into());
        }
        Ok((connect, start.elapsed()))
    })();
    let waited = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    let served =
        served.unwrap_or_else(|e| panic!("the new client was not served ({e}) after {waited:?}"));
    println!(
        "new client ({newcomer}): connected {:.2?} and echoed {:.2?} after it arrived \
         (idle timeout {idle_timeout_s} s, idle-holder eviction after 3 s)",
        served.0, served.1
    );
    let deadline = Instant::now() + holder_patience + Duration::from_secs(5);
    for h in holders {
        while !h.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let c = latest_stats(&mut server, Duration::from_secs(3));
    println!(
        "holders: {} connected in all, {} dropped by the server; server: {} evicted, {} timed \
         out, {} SYNs held",
        connected.load(Ordering::SeqCst),
        ended.load(Ordering::SeqCst),
        c.get("tcp.evicted"),
        c.get("tcp.timed_out"),
        c.get("tcp.held_syns")
    );
    memory.check("idle holders");
    server.stop();
    (served, c)
}

/// The issue's bound for a new client behind idle holders: the idle timeout plus 3 s.
const IDLE_BOUND: Duration = Duration::from_secs(3 + 3);

/// Idle holders that hold every slot: of 100 connection attempts that send nothing, the 8
/// that get a slot stay; the others give up after 0.8 s, before the kernel retransmits their SYNs (a `connect` with a short
/// timeout). A new client is served within the idle timeout plus 3 s; the idle-holder
/// eviction serves it sooner, at its first SYN retransmission after the holders have been
/// silent for 1 s.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn idle_holders_of_every_slot_are_reclaimed_for_a_new_client() {
    in_netns(
        "idle_holders_of_every_slot_are_reclaimed_for_a_new_client",
        Duration::from_secs(60),
        false,
        || {
            let ((_, total), c) = idle_holders(Duration::from_millis(800), 3, "192.168.69.101");
            assert!(
                total <= IDLE_BOUND,
                "served only after {total:?} (idle timeout 3 s)"
            );
            assert!(
                c.get("tcp.evicted") + c.get("tcp.timed_out") >= 1,
                "holders were reclaimed"
            );
        },
    );
}

/// Idle holders whose connection attempts keep trying (the kernel's SYN retransmissions,
/// for 10 s): 8 of 100 hold the slots, 92 retransmit their SYNs. The issue's bound applies
/// as well: the new client is served within the idle timeout plus 3 s.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn idle_holders_with_retrying_connects_do_not_starve_a_new_client() {
    in_netns(
        "idle_holders_with_retrying_connects_do_not_starve_a_new_client",
        Duration::from_secs(90),
        false,
        || {
            let ((_, total), c) = idle_holders(Duration::from_secs(10), 3, "192.168.69.101");
            assert!(
                total <= IDLE_BOUND,
                "served only after {total:?} (idle timeout 3 s); server: {} evicted, {} timed \
                 out, {} SYNs held",
                c.get("tcp.evicted"),
                c.get("tcp.timed_out"),
                c.get("tcp.held_syns")
            );
        },
    );
}

/// Issue 10's same-host idle crowd: 100 connections from the new client's own address
/// (192.168.69.100) that send nothing hold the 8 slots, with a 2 s idle timeout; those left
/// waiting keep retransmitting their SYNs for 10 s. The newcomer, from that same address,
/// must be served (connected and echoed) within 5 s of its arrival, as most clients give up
/// after that: a slot freed by an idle holder goes to the newest waiting client, not to the
/// crowd that queued before it. (`tests/sim_defences.rs` has the simulated version.)
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn idle_holders_from_the_new_clients_own_address_do_not_keep_it_waiting() {
    in_netns(
        "idle_holders_from_the_new_clients_own_address_do_not_keep_it_waiting",
        Duration::from_secs(90),
        false,
        || {
            let ((_, total), c) = idle_holders(Duration::from_secs(10), 2, "192.168.69.100");
            assert!(
                total <= Duration::from_secs(5),
                "served only after {total:?} (idle timeout 2 s); server: {} evicted, {} timed \
                 out, {} SYNs held",
                c.get("tcp.evicted"),
                c.get("tcp.timed_out"),
                c.get("tcp.held_syns")
            );
            assert!(
                c.get("tcp.evicted") + c.get("tcp.timed_out") >= 1,
                "holders were reclaimed"
            );
        },
    );
}

/// A pool sized at run time: `tap_server --slots 100` serves 100 kernel clients at once. 100
/// connections are opened together (half over IPv4, half over IPv6) and each echoes 1 KiB;
/// none closes before all 100 have their echo, and the server then counts 100 active
/// connections. A 101st connection waits (its SYN held, Defer) until one of the 100 closes,
/// then is served from the backlog. All close gracefully.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn a_pool_of_100_slots_serves_100_clients_at_once() {
    in_netns(
        "a_pool_of_100_slots_serves_100_clients_at_once",
        Duration::from_secs(90),
        false,
        || {
            const CLIENTS: usize = 100;
            let mut server = Server::start(&["--slots", "100", "--stats", "1"]);
            // One echo over each IP version first, so the server has the host's MAC: smoltcp
            // drops what it sends to a neighbour not yet resolved, and a client would wait for
            // its SYN retransmission (1 s).
            for ip in [SERVER_V4, SERVER_V6] {
                let echo = seed_tcp_client(ip, b"neighbours").expect("first echo");
                assert_eq!(echo, b"neighbours");
            }
            let warm = latest_stats(&mut server, Duration::from_secs(3)).get("tcp.accepted");
            let t0 = Instant::now();
            let clients: Vec<_> = (0..CLIENTS)
                .map(|i| {
                    let ip = if i.is_multiple_of(2) {
                        SERVER_V4
                    } else {
                        SERVER_V6
                    };
                    thread::spawn(move || -> Result<(TcpStream, Duration), String> {
                        let mut s = TcpStream::connect_timeout(
                            &endpoint(ip, PORT),
                            Duration::from_secs(10),
                        )
                        .map_err(|e| format!("client {i} ({ip}): connect: {e}"))?;
                        s.set_read_timeout(Some(Duration::from_secs(10)))
                            .map_err(|e| e.to_string())?;
                        let mut message = vec![0u8; 1024];
                        Pattern(i as u64 + 1).fill(&mut message);
                        s.write_all(&message)
                            .map_err(|e| format!("client {i} ({ip}): write: {e}"))?;
                        let mut echo = vec![0u8; message.len()];
                        s.read_exact(&mut echo)
                            .map_err(|e| format!("client {i} ({ip}): echo: {e}"))?;
                        if echo != message {
                            return Err(format!("client {i} ({ip}): the echo differs"));
                        }
                        // Kept open: returned to the test, which closes it later.
                        Ok((s, t0.elapsed()))
                    })
                })
                .collect();
            let results: Vec<_> = clients
                .into_iter()
                .map(|c| c.join().expect("client thread"))
                .collect();
            let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
            assert!(
                failed.is_empty(),
                "{} of {CLIENTS} clients not served: {failed:?}",
                failed.len()
            );
            let (mut streams, mut times): (Vec<TcpStream>, Vec<Duration>) =
                results.into_iter().map(Result::unwrap).unzip();
            times.sort();
            println!(
                "{CLIENTS} clients connected and echoed 1 KiB each, all open: median {:.2?}, \
                 slowest {:.2?} after the first was started",
                percentile(&times, 0.5),
                times[CLIENTS - 1]
            );
            let open = latest_stats(&mut server, Duration::from_secs(3));
            assert_eq!(
                open.get("tcp.active"),
                CLIENTS as u64,
                "every client holds a slot of its own at the same time"
            );
            assert_eq!(open.get("tcp.accepted"), warm + CLIENTS as u64);

            // A 101st finds no slot: its SYN is held until one of the 100 closes.
            let extra = thread::spawn(|| {
                let t = Instant::now();
                let r = echo_once(
                    endpoint(SERVER_V4, PORT),
                    b"the 101st client",
                    Duration::from_secs(10),
                );
                (r, t.elapsed())
            });
            thread::sleep(Duration::from_millis(1500));
            assert!(
                !extra.is_finished(),
                "a 101st client was served while 100 held every slot"
            );
            let waiting = latest_stats(&mut server, Duration::from_secs(3));
            assert_eq!(waiting.get("tcp.active"), CLIENTS as u64);
            assert!(waiting.get("tcp.held_syns") >= 1, "the 101st SYN is held");
            let mut first = streams.remove(0);
            let closed_at = Instant::now();
            first.shutdown(Shutdown::Write).expect("shutdown");
            let mut rest = Vec::new();
            first.read_to_end(&mut rest).expect("close");
            let (served, waited) = extra.join().expect("the 101st client");
            let (connect, _) =
                served.unwrap_or_else(|e| panic!("the 101st client was not served: {e}"));
            let after_close = closed_at.elapsed();
            println!(
                "101st client: connected {connect:.2?} after it arrived, {after_close:.2?} \
                 after a slot freed (in all {waited:.2?})"
            );
            assert!(
                after_close <= Duration::from_secs(2),
                "the 101st client waited {after_close:?} after a slot freed"
            );
            for mut s in streams {
                s.shutdown(Shutdown::Write).expect("shutdown");
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).expect("close");
            }
            let c = server.stop();
            assert_eq!(c.get("tcp.accepted"), warm + CLIENTS as u64 + 1);
            assert_eq!(
                c.get("tcp.closed"),
                warm + CLIENTS as u64 + 1,
                "all closed gracefully"
            );
            assert_eq!(c.get("tcp.reset"), 0);
            assert_eq!(c.get("tcp.active"), 0);
        },
    );
}

/// A sorted list of durations' percentile.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `count` sequential 64-byte echoes on one connection; the sorted round-trip times.
fn echo_latencies(count: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect_timeout(&endpoint(SERVER_V4, PORT), Duration::from_secs(10))
        .expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut msg = [0u8; 64];
    let mut echo = [0u8; 64];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count {
        msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let t = Instant::now();
        s.write_all(&msg).expect("write");
        s.read_exact(&mut echo)
            .unwrap_or_else(|e| panic!("echo {i} of {count}: {e}"));
        rtts.push(t.elapsed());
        assert_eq!(echo, msg, "echo {i}");
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("close");
    rtts.sort();
    rtts
}

fn setsockopt_int(s: &TcpStream, level: i32, name: i32, value: i32) {
    // SAFETY: setsockopt(2) on an open socket with a pointer to an int and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&raw const value).cast::<libc::c_void>(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// Slow readers: a client that sends and never reads fills its slot's buffers (the server
/// then advertises a zero window); another client's 64-byte echo latency is measured over
/// 2,000 round trips alone, beside the stuck client, and alone again.
///
/// The bound: p50 beside the stuck client within 2x the slower of the two "alone" runs plus
/// 200 us. A stuck slot costs the server nothing per poll but a look at its socket; the 2x
/// and 200 us absorb the noise of a 2-core machine shared with other work. The p99 is
/// printed, and only bounded loosely (10x + 5 ms), since one preempted round trip moves it.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn stuck_reader_does_not_slow_the_other_slots() {
    in_netns(
        "stuck_reader_does_not_slow_the_other_slots",
        Duration::from_secs(90),
        false,
        || {
            const ROUND_TRIPS: usize = 2000;
            let mut server = Server::start(&["--stats", "1"]);
            warm_up(SERVER_V4, 8);
            let memory = Memory::after_warm_up(&server);
            let show = |name: &str, v: &[Duration]| {
                println!(
                    "64 B echo {name}: p50 {:.1?}, p99 {:.1?}, max {:.1?} ({} round trips)",
                    percentile(v, 0.5),
                    percentile(v, 0.99),
                    v[v.len() - 1],
                    v.len()
                );
            };
            let alone = echo_latencies(ROUND_TRIPS);
            show("alone", &alone);

            // The stuck client: small socket buffers, so what it writes piles up in the
            // server's slot (128 KiB receive, 128 KiB transmit) rather than in its kernel.
            let mut stuck =
                TcpStream::connect_timeout(&endpoint(SERVER_V4, PORT), Duration::from_secs(10))
                    .expect("connect");
            setsockopt_int(&stuck, libc::SOL_SOCKET, libc::SO_RCVBUF, 4096);
            setsockopt_int(&stuck, libc::SOL_SOCKET, libc::SO_SNDBUF, 16384);
            stuck.set_nonblocking(true).expect("nonblocking");
            let chunk = [0x5au8; 8192];
            let mut written = 0usize;
            let mut last_progress = Instant::now();
            let t0 = Instant::now();
            // Until it has written what the server's buffers hold and has made no progress
            // for 1 s (the kernel probes a zero window with backing-off persist timers, so a
            // pause alone does not mean full), or 5 s without progress.
            let full = 256 * 1024 + 8192;
            while last_progress.elapsed() < Duration::from_secs(if written >= full { 1 } else { 5 })
            {
                assert!(t0.elapsed() < Duration::from_secs(20), "never filled");
                match stuck.write(&chunk) {
                    Ok(n) => {
                        written += n;
                        last_progress = Instant::now();
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("stuck client write: {e}"),
                }
            }
            println!(
                "stuck client's socket: {}",
                sh("ss -tnie 'dport = :8000' | tr -s ' ' | tail -n +2")
            );
            let stats = latest_stats(&mut server, Duration::from_secs(3));
            println!(
                "stuck client: wrote {written} B before its window closed; the server took \
                 {} B into transmit buffers",
                stats.get("tcp.bytes_in")
            );
            // The server's 128 KiB receive and 128 KiB transmit buffers are full (the client
            // holds at most a few KiB in its own receive buffer and 32 KiB unsent).
            assert!(
                written >= 256 * 1024,
                "the stuck client filled its slot: {written} B"
            );
            let beside = echo_latencies(ROUND_TRIPS);
            show("beside the stuck client", &beside);
            // Still stuck: nothing was read, it holds its slot.
            let mut peek = [0u8; 1];
            assert!(
                stuck.peek(&mut peek).is_ok(),
                "the stuck client still has data queued"
            );
            let c = latest_stats(&mut server, Duration::from_secs(3));
            assert_eq!(c.get("tcp.timed_out"), 0);
            assert_eq!(
                c.get("tcp.active"),
                1,
                "the stuck client still holds its slot"
            );
            drop(stuck);
            thread::sleep(Duration::from_millis(200));
            let again = echo_latencies(ROUND_TRIPS);
            show("alone again", &again);

            let p50_alone = percentile(&alone, 0.5).max(percentile(&again, 0.5));
            let p99_alone = percentile(&alone, 0.99).max(percentile(&again, 0.99));
            let p50 = percentile(&beside, 0.5);
            let p99 = percentile(&beside, 0.99);
            assert!(
                p50 <= p50_alone * 2 + Duration::from_micros(200),
                "p50 beside the stuck client {p50:?} vs {p50_alone:?} alone"
            );
            assert!(
                p99 <= p99_alone * 10 + Duration::from_millis(5),
                "p99 beside the stuck client {p99:?} vs {p99_alone:?} alone"
            );
            memory.check("stuck reader");
            server.stop();
        },
    );
}

/// Malformed frames: 50,000 frames of 16 kinds (random bytes, Ethernet runts and VLAN tags,
/// bad IPv4 versions, header lengths, total lengths, checksums, options, fragments, bad IPv6
/// headers and extension headers, impossible TCP flags, bad data offsets, garbage options,
/// bad TCP checksums, bad UDP lengths, ICMP/NDP junk, ARP junk; well-formed ARP that smoltcp
/// would cache is the neighbour-cache case's) at 10,000 per second, in 50
/// batches of 1,000. After every batch a new TCP connection (IPv4 and IPv6 in turn) and a
/// UDP datagram are echoed. The server keeps running, exits 0 on SIGTERM with its final
/// line, and never panics.
fn malformed_frames_do_not_stop_the_echo(dev: Dev) {
    in_netns(
        &dev.case("malformed_frames_do_not_stop_the_echo"),
        Duration::from_secs(120),
        false,
        || {
            const BATCHES: usize = 50;
            const PER_BATCH: usize = 1000;
            const RATE: u64 = 10_000;
            let mut server = Server::start(&dev.with(&["--stats", "1"]));
            warm_up(SERVER_V4, 8);
            let memory = Memory::after_warm_up(&server);
            let before = latest_stats(&mut server, Duration::from_secs(3));
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            println!("malformed frames: seed {seed:#x}");
            let mut junk = Junk::new(
                seed,
                (SERVER_V4, SERVER_V6),
                ("192.168.69.100", "fdaa::100"),
                PORT,
            );
            let mut link = RawLink::open("tap0").expect("AF_PACKET socket on tap0");
            let mut pacer = Pacer::new(RATE);
            let mut per_kind = [0usize; Kind::ALL.len()];
            let mut send_errors = 0usize;
            let mut refused_kinds = [0usize; Kind::ALL.len()];
            let mut last_error = None;
            let mut sent = 0usize;
            let mut slowest = (Duration::ZERO, 0usize);
            let t0 = Instant::now();
            for batch in 0..BATCHES {
                for _ in 0..PER_BATCH {
                    let (kind, frame) = junk.next_frame();
                    pacer.tick();
                    match link.send(&frame) {
                        Ok(()) => {
                            per_kind[kind.index()] += 1;
                            sent += 1;
                        }
                        // The kernel refuses some frames outright (EINVAL); count them.
                        Err(e) => {
                            send_errors += 1;
                            refused_kinds[kind.index()] += 1;
                            last_error = Some(e.to_string());
                        }
                    }
                }
                let ip = if batch.is_multiple_of(2) {
                    SERVER_V4
                } else {
                    SERVER_V6
                };
                let message = format!("echo after junk batch {batch}");
                let (_, took) = echo_once(
                    endpoint(ip, PORT),
                    message.as_bytes(),
                    Duration::from_secs(10),
                )
                .unwrap_or_else(|e| panic!("TCP echo over {ip} after batch {batch}: {e}"));
                if took > slowest.0 {
                    slowest = (took, batch);
                }
                let udp = seed_udp_client(ip, message.as_bytes());
                assert_eq!(udp, message.as_bytes(), "UDP echo after batch {batch}");
            }
            let took = t0.elapsed();
            let refused = link.refused;
            println!(
                "malformed frames: {sent} sent in {took:.2?}, {send_errors} refused by the \
                 kernel, {refused} dropped by a full queue; {BATCHES} TCP and {BATCHES} UDP \
                 echoes all OK (slowest TCP echo {:.2?} after batch {})",
                slowest.0, slowest.1
            );
            for ((kind, n), r) in Kind::ALL.iter().zip(per_kind).zip(refused_kinds) {
                println!("  {n:>6} {} ({r} refused by the kernel)", kind.name());
            }
            println!("last send error: {last_error:?}");
            let after = latest_stats(&mut server, Duration::from_secs(3));
            let rx = after.get("frames.rx") - before.get("frames.rx");
            println!("server: {rx} frames received during the run");
            assert!(
                rx as usize + refused as usize >= sent,
                "the frames reached the server: {rx} received, {sent} sent"
            );
            assert_eq!(send_errors, 0, "frames the kernel would not send");
            memory.check("malformed frames");
            let c = server.stop();
            assert_eq!(c.get("tcp.active"), 0);
        },
    );
}

/// One UDP datagram to the echo port from an on-link address that never answers ARP (or
/// neighbour solicitation) must not stop the UDP echo for everybody else: a real client's
/// datagrams right after it are still echoed, over IPv4 and IPv6.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn udp_echo_survives_a_datagram_from_a_silent_neighbour() {
    in_netns(
        "udp_echo_survives_a_datagram_from_a_silent_neighbour",
        Duration::from_secs(60),
        false,
        || {
            let server = Server::start(&["--stats", "1"]);
            assert_eq!(seed_udp_client(SERVER_V4, b"before"), b"before");
            let mut link = RawLink::open("tap0").expect("AF_PACKET socket on tap0");
            for (silent, server_ip) in [("192.168.69.77", SERVER_V4), ("fdaa::77", SERVER_V6)] {
                let frame = frames::udp(
                    &peer([0x06, 0x77, 0, 0, 0, 0x77], ip(silent), 4242),
                    &peer(SERVER_MAC, ip(server_ip), PORT),
                    b"from nobody",
                );
                link.send(&frame).expect("send");
                thread::sleep(Duration::from_millis(50));
                let t0 = Instant::now();
                let echo = seed_udp_client(server_ip, b"a real client after it");
                println!(
                    "UDP echo over {server_ip} after a datagram from silent {silent}: {:.2?}",
                    t0.elapsed()
                );
                assert_eq!(echo, b"a real client after it");
            }
            let c = server.stop();
            // Each real client's first datagram may be discarded with the stalled queue (it
            // then retries): at least 1 + 2 + 2 arrived, and each silent one was flushed.
            assert!(c.get("udp.datagrams_in") >= 1 + 2 + 2);
            assert!(c.get("udp.tx_flushes") >= 2);
        },
    );
}

/// Neighbour-cache churn: well-formed ARP requests for the server from many on-link senders
/// (each one is cached by smoltcp, whose cache holds 8 entries for IPv4 and IPv6 together),
/// with a few SYNs and one UDP datagram from silent on-link addresses (which the server then
/// keeps trying to resolve). Ten rounds of 200 requests, 8 SYNs and one datagram; after
/// each, a real client connects and echoes, over IPv6 and IPv4 in turn, within the SYN-flood
/// bound (3.5 s).
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn neighbour_cache_churn_does_not_lock_out_real_clients() {
    in_netns(
        "neighbour_cache_churn_does_not_lock_out_real_clients",
        Duration::from_secs(120),
        false,
        || {
            const ROUNDS: u32 = 10;
            let mut server = Server::start(&["--stats", "1"]);
            warm_up(SERVER_V4, 8);
            let memory = Memory::after_warm_up(&server);
            let sv4: std::net::Ipv4Addr = SERVER_V4.parse().expect("IPv4");
            let to_server = peer(SERVER_MAC, sv4, PORT);
            let mut link = RawLink::open("tap0").expect("AF_PACKET socket on tap0");
            let mut pacer = Pacer::new(5_000);
            let mut times = Vec::new();
            for round in 0..ROUNDS {
                for i in 0..200u32 {
                    // Senders 192.168.69.2-99 and .102-.201 (never the host's .100/.101).
                    let host = 2 + (round * 200 + i) % 198;
                    let host = if host >= 100 { host + 2 } else { host } as u8;
                    let mac = [0x06, 0x55, 0, 0, round as u8, host];
                    pacer.tick();
                    link.send(&arp_request(mac, [192, 168, 69, host].into(), sv4))
                        .expect("send ARP");
                }
                for i in 0..8u32 {
                    // SYNs from 192.168.69.210-249: silent (nobody answers for them).
                    let host = 210 + ((round * 8 + i) % 40) as u8;
                    let silent = peer(
                        [0x06, 0x44, 0, 0, 0, host],
                        std::net::Ipv4Addr::new(192, 168, 69, host),
                        30000 + (round * 8 + i) as u16,
                    );
                    let frame = frames::syn(&silent, &to_server, round * 1000 + i);
                    pacer.tick();
                    link.send(&frame).expect("send SYN");
                }
                // And one UDP datagram to the echo port from a silent address.
                let silent = peer(
                    [0x06, 0x44, 0, 0, 0, 250],
                    std::net::Ipv4Addr::new(192, 168, 69, 250),
                    4242,
                );
                let frame = frames::udp(&silent, &to_server, b"from nobody");
                link.send(&frame).expect("send UDP");
                let ip = if round.is_multiple_of(2) {
                    SERVER_V6
                } else {
                    SERVER_V4
                };
                let r = echo_once(
                    endpoint(ip, PORT),
                    format!("real client after churn round {round}").as_bytes(),
                    Duration::from_secs(10),
                );
                println!("round {round}: real client over {ip}: {r:?}");
                times.push((ip, r));
            }
            let c = latest_stats(&mut server, Duration::from_secs(3));
            println!(
                "server: {} SYNs held, {} half-open recycled, {} handshake timeouts",
                c.get("tcp.held_syns"),
                c.get("tcp.half_open_recycled"),
                c.get("tcp.handshake_timeouts")
            );
            for (round, (ip, r)) in times.iter().enumerate() {
                let (connect, _) = r.as_ref().unwrap_or_else(|e| {
                    panic!("round {round}: the real client over {ip} was not served: {e}")
                });
                assert!(
                    *connect <= Duration::from_millis(3500),
                    "round {round}: the real client over {ip} connected after {connect:?}"
                );
            }
            memory.check("neighbour-cache churn");
            server.stop();
        },
    );
}
