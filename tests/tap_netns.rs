//! The TAP examples against the Linux kernel's own TCP/IP stack, each case in a private
//! network namespace.
//!
//! Every case re-runs this test binary, filtered to itself, under `unshare --net` (a new,
//! empty network namespace: only `lo`, which it brings up). Inside, it creates the TAP (or
//! lets `tap_server` create it), starts the example, and talks to it with std sockets, `nc`,
//! `socat`, `python3` and `tcpdump`. Nothing outside the namespace is touched: the
//! 192.168.69.0/24 and fdaa::/64 addresses exist only in it, and it disappears with its last
//! process. The parent kills the child's whole process group when the case ends or overruns.
//!
//! The cases need root (CAP_NET_ADMIN and CAP_SYS_ADMIN for the namespaces) and the example
//! binaries, so they are `#[ignore]`d in a plain `cargo test`. Run them with:
//!
//! ```text
//! cargo build --release --examples
//! sudo -E cargo test --release --test tap_netns -- --ignored
//! ```
//!
//! (`.ci/20-tap.sh` does this.) Without root they skip with a loud message, except when
//! `CI=true`, where they fail.
//!
//! The namespace machinery is in `tests/netns/mod.rs`, shared with `tests/tap_robustness.rs`.

mod netns;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use netns::raw::{RawLink, SERVER_MAC};
use netns::*;
use smolecho::sim::frames;
use smolecho::smoltcp::wire::{EthernetAddress, IpAddress};

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

// These run on both TAP devices (`case::tun_tap`, `case::offload`).
on_both_devices!(
    seed_clients_over_ipv4_and_ipv6,
    nc_half_close,
    bulk_100_mb_through_one_connection,
    udp_2000_datagrams_of_1400_bytes,
    tap_client_against_kernel_echo_servers,
    pcap_capture_is_readable,
    fault_injection_still_echoes_exactly,
    corrupt_frames_are_dropped,
);

/// Case 1: seed-style clients (connect, send the default string, read the echo) over IPv4 and
/// IPv6, TCP and UDP, with std sockets and with the README's Python client. Also: an idle
/// server sleeps (no busy loop).
fn seed_clients_over_ipv4_and_ipv6(dev: Dev) {
    in_netns(
        &dev.case("seed_clients_over_ipv4_and_ipv6"),
        Duration::from_secs(60),
        false,
        || {
            let server = Server::start(&dev.with(&[]));
            for ip in [SERVER_V4, SERVER_V6] {
                let echo = seed_tcp_client(ip, SEED_MESSAGE.as_bytes()).expect("tcp echo");
                assert_eq!(echo, SEED_MESSAGE.as_bytes(), "TCP over {ip}");
                let echo = seed_udp_client(ip, SEED_MESSAGE.as_bytes());
                assert_eq!(echo, SEED_MESSAGE.as_bytes(), "UDP over {ip}");
            }
            // The README's Python clients, as they are there.
            let py_tcp = readme_python("echo-client.py");
            let py_udp = readme_python("udpc.py");
            let tcp = sh(&format!("python3 - 192.168.69.1 8000 <<'EOF'\n{py_tcp}EOF"));
            assert_eq!(tcp.trim(), format!("Received: {SEED_MESSAGE}"));
            let udp = sh(&format!("python3 - fdaa::1 8000 <<'EOF'\n{py_udp}EOF"));
            assert_eq!(udp.trim(), format!("Received: {SEED_MESSAGE}"));

            // Idle: no connection, no deadline; the server must sleep on the TAP.
            thread::sleep(Duration::from_millis(300));
            let before = cpu_ticks(server.pid());
            thread::sleep(Duration::from_secs(2));
            let used = cpu_ticks(server.pid()) - before;
            println!("idle CPU over 2 s: {used} ticks");
            assert!(
                used <= 2,
                "idle server used {used} clock ticks in 2 s: busy loop?"
            );

            let c = server.stop();
            assert_eq!(c.get("tcp.accepted"), 3);
            assert_eq!(c.get("tcp.closed"), 3);
            assert_eq!(c.get("tcp.bytes_in"), 3 * SEED_MESSAGE.len() as u64);
            assert_eq!(c.get("tcp.bytes_out"), 3 * SEED_MESSAGE.len() as u64);
            assert_eq!(c.get("udp.datagrams_in"), 3);
            assert_eq!(c.get("udp.datagrams_out"), 3);
            assert_eq!(c.get("udp.dropped"), 0);
        },
    );
}

/// The README's Python block that starts with `# {name}`, as it stands there.
fn readme_python(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let start = format!("```python\n# {name}");
    let at = readme
        .find(&start)
        .unwrap_or_else(|| panic!("README.md has no Python block starting with `# {name}`"));
    let body = &readme[at + "```python\n".len()..];
    let end = body.find("```").expect("the block ends");
    body[..end].to_string()
}

/// Case 2: `printf data | nc -N`: the client half-closes at once; everything is still echoed,
/// then the server closes. Small and large payloads, IPv4 and IPv6.
fn nc_half_close(dev: Dev) {
    in_netns(
        &dev.case("nc_half_close"),
        Duration::from_secs(60),
        false,
        || {
            let server = Server::start(&dev.with(&[]));
            let out = sh("printf 'data' | timeout 10 nc -N 192.168.69.1 8000");
            assert_eq!(out, "data");
            let out = sh("printf 'six\\n' | timeout 10 nc -N fdaa::1 8000");
            assert_eq!(out, "six\n");
            // 512 KiB: far more than the socket buffers, so the FIN arrives long before the echo
            // is done.
            sh("d=$(mktemp -d) && trap 'rm -rf \"$d\"' EXIT && \
            head -c 524288 /dev/urandom > \"$d/in\" && \
            timeout 20 nc -N 192.168.69.1 8000 < \"$d/in\" > \"$d/out\" && \
            cmp \"$d/in\" \"$d/out\"");
            let c = server.stop();
            assert_eq!(c.get("tcp.accepted"), 3);
            assert_eq!(
                c.get("tcp.closed"),
                3,
                "every half-closed connection ends gracefully"
            );
            assert_eq!(c.get("tcp.reset"), 0);
            assert_eq!(c.get("tcp.bytes_out"), 4 + 4 + 524288);
        },
    );
}

/// One client of the crowd cases: connect (retrying on refusal when `retry`), echo a
/// message, hold the connection `hold`, close. Returns how many times it was refused.
fn crowd_client(id: usize, retry: bool, hold: Duration) -> Result<u32, String> {
    let message = format!("client {id:02} says hello");
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match seed_tcp_client_held(SERVER_V4, message.as_bytes(), hold) {
            Ok(echo) if echo == message.as_bytes() => return Ok(refused),
            Ok(echo) => return Err(format!("client {id}: wrong echo {echo:?}")),
            Err(e) if retry && e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused += 1;
                if Instant::now() > deadline {
                    return Err(format!("client {id}: still refused after 60 s"));
                }
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("client {id}: {e}")),
        }
    }
}

fn seed_tcp_client_held(ip: &str, message: &[u8], hold: Duration) -> std::io::Result<Vec<u8>> {
    // A plain connect: the kernel's own SYN retransmission is what a deferred client relies on.
    let mut s = TcpStream::connect(endpoint(ip, PORT))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(message)?;
    let mut echo = vec![0; message.len()];
    s.read_exact(&mut echo)?;
    thread::sleep(hold);
    s.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    Ok(echo)
}

fn crowd(clients: usize, retry: bool, hold: Duration) -> (Vec<Result<u32, String>>, Duration) {
    let start = Arc::new(Barrier::new(clients));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|id| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                crowd_client(id, retry, hold)
            })
        })
        .collect();
    let results = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("client thread panicked".into()))
        })
        .collect();
    (results, t0.elapsed())
}

/// Case 3a: 64 clients at once against 8 slots with `--overflow defer`: the extra SYNs are
/// held (the kernel retransmits them) and every client is served; none is refused.
///
/// The namespace's kernel retransmits SYNs every second for the first 10 tries
/// (`tcp_syn_linear_timeouts`, per namespace) instead of backing off exponentially, so the
/// eight rounds take about eight seconds rather than two minutes.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn crowd_of_64_with_8_slots_defer() {
    in_netns(
        "crowd_of_64_with_8_slots_defer",
        Duration::from_secs(150),
        false,
        || {
            let linear = Path::new("/proc/sys/net/ipv4/tcp_syn_linear_timeouts");
            if linear.exists() {
                sh("echo 10 > /proc/sys/net/ipv4/tcp_syn_linear_timeouts");
            }
            sh("echo 10 > /proc/sys/net/ipv4/tcp_syn_retries");
            let mut server =
                Server::start(&["--slots", "8", "--overflow", "defer", "--stats", "2"]);
            let (results, took) = crowd(64, false, Duration::from_millis(300));
            println!("64 clients on 8 slots (defer) served in {took:?}");
            let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
            assert!(failures.is_empty(), "clients failed: {failures:?}");
            server.wait_line("stats: ", Duration::from_secs(5));
            let c = server.stop();
            assert_eq!(c.get("tcp.accepted"), 64);
            assert_eq!(c.get("tcp.closed"), 64);
            assert_eq!(c.get("tcp.refused"), 0);
            assert!(
                c.get("tcp.held_syns") >= 56,
                "SYNs beyond 8 slots were held back"
            );
        },
    );
}

/// Case 3b: the same crowd with `--overflow refuse`: the extra clients are refused at once
/// (RST) and served when they retry.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn crowd_of_64_with_8_slots_refuse() {
    in_netns(
        "crowd_of_64_with_8_slots_refuse",
        Duration::from_secs(120),
        false,
        || {
            let server = Server::start(&["--slots", "8", "--overflow", "refuse"]);
            let (results, took) = crowd(64, true, Duration::from_millis(300));
            println!("64 clients on 8 slots (refuse, retry after 50 ms) served in {took:?}");
            let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
            assert!(failures.is_empty(), "clients failed: {failures:?}");
            let refusals: u32 = results.iter().filter_map(|r| r.as_ref().ok()).sum();
            let refused_clients = results
                .iter()
                .filter(|r| matches!(r, Ok(n) if *n > 0))
                .count();
            println!("{refused_clients} clients were refused, {refusals} refusals in all");
            assert!(refused_clients >= 8, "the extra clients saw refusals");
            let c = server.stop();
            assert_eq!(c.get("tcp.accepted"), 64);
            assert_eq!(c.get("tcp.closed"), 64);
            assert_eq!(c.get("tcp.held_syns"), 0);
            assert!(c.get("tcp.refused") >= u64::from(refusals));
        },
    );
}

/// Case 4: 100 MB through one connection, every byte verified; prints the throughput.
fn bulk_100_mb_through_one_connection(dev: Dev) {
    in_netns(
        &dev.case("bulk_100_mb_through_one_connection"),
        Duration::from_secs(240),
        false,
        || {
            let server = Server::start(&dev.with(&[]));
            for ip in [SERVER_V4, SERVER_V6] {
                bulk_echo(ip, BULK_TOTAL);
            }
            let c = server.stop();
            assert_eq!(c.get("tcp.bytes_in"), 2 * BULK_TOTAL as u64);
            assert_eq!(c.get("tcp.bytes_out"), 2 * BULK_TOTAL as u64);
            assert_eq!(c.get("tcp.closed"), 2);
            if dev == Dev::Offload {
                // The point of the device: large segments both ways.
                assert!(c.get("frames.tx_segmented") > 0, "no segment was offloaded");
                assert!(
                    c.get("frames.rx_coalesced") > 0,
                    "no coalesced segment arrived"
                );
            }
        },
    );
}

const BULK_TOTAL: usize = 100_000_000;

/// `total` bytes through one connection to `ip`, every byte of the echo verified; then the
/// server's FIN. Prints the throughput.
fn bulk_echo(ip: &str, total: usize) {
    let stream =
        TcpStream::connect_timeout(&endpoint(ip, PORT), Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut tx = stream.try_clone().expect("clone");
    let t0 = Instant::now();
    let writer = thread::spawn(move || -> std::io::Result<()> {
        let mut pattern = Pattern(0x9E37_79B9_7F4A_7C15);
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
    let mut expected = Pattern(0x9E37_79B9_7F4A_7C15);
    let mut want = vec![0u8; 64 * 1024];
    let mut got = vec![0u8; 64 * 1024];
    let mut received = 0usize;
    while received < total {
        let n = (total - received).min(got.len());
        rx.read_exact(&mut got[..n])
            .unwrap_or_else(|e| panic!("echo over {ip} stopped after {received} bytes: {e}"));
        expected.fill(&mut want[..n]);
        if got[..n] != want[..n] {
            let at = got[..n]
                .iter()
                .zip(&want[..n])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!("echo over {ip} differs at byte {}", received + at);
        }
        received += n;
    }
    let mut tail = Vec::new();
    rx.read_to_end(&mut tail)
        .expect("server closes after the echo");
    assert!(tail.is_empty(), "{} bytes beyond the echo", tail.len());
    let took = t0.elapsed();
    writer.join().expect("writer").expect("write");
    println!(
        "bulk over {ip}: {total} bytes echoed and verified in {took:.2?}: {:.1} MB/s each way",
        total as f64 / took.as_secs_f64() / 1e6
    );
}

/// Case 5: 2000 UDP datagrams of 1400 bytes, each echoed intact (at most 32 in flight).
fn udp_2000_datagrams_of_1400_bytes(dev: Dev) {
    in_netns(
        &dev.case("udp_2000_datagrams_of_1400_bytes"),
        Duration::from_secs(60),
        false,
        || {
            const COUNT: usize = 2000;
            const SIZE: usize = 1400;
            const WINDOW: usize = 32;
            let server = Server::start(&dev.with(&[]));
            let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
            sock.connect(endpoint(SERVER_V4, PORT)).expect("connect");
            sock.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let datagram = |seq: usize| -> Vec<u8> {
                let mut d = vec![0u8; SIZE];
                Pattern(seq as u64 + 1).fill(&mut d);
                d[..8].copy_from_slice(&(seq as u64).to_be_bytes());
                d
            };
            let mut seen = vec![false; COUNT];
            let (mut sent, mut received) = (0usize, 0usize);
            let mut buf = [0u8; 2048];
            let t0 = Instant::now();
            while received < COUNT {
                while sent < COUNT && sent - received < WINDOW {
                    sock.send(&datagram(sent)).expect("send");
                    sent += 1;
                }
                let n = sock
                    .recv(&mut buf)
                    .unwrap_or_else(|e| panic!("lost echoes: {received} of {sent} back ({e})"));
                assert_eq!(n, SIZE, "echo has the datagram's size");
                let seq = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes")) as usize;
                assert!(
                    seq < COUNT && !seen[seq],
                    "unexpected or duplicate echo {seq}"
                );
                assert_eq!(buf[..n], datagram(seq)[..], "echo {seq} differs");
                seen[seq] = true;
                received += 1;
            }
            println!("udp: {COUNT} x {SIZE} B echoed in {:.2?}", t0.elapsed());
            let c = server.stop();
            assert_eq!(c.get("udp.datagrams_in"), COUNT as u64);
            assert_eq!(c.get("udp.datagrams_out"), COUNT as u64);
            assert_eq!(c.get("udp.bytes_out"), (COUNT * SIZE) as u64);
            assert_eq!(c.get("udp.dropped"), 0);
        },
    );
}

/// Case 6: `tap_client` (smoltcp) against kernel echo servers in the namespace: socat for TCP
/// (IPv4 and IPv6) and a Python udps.py for UDP. It fails when there is no server or when the
/// "echo" differs.
fn tap_client_against_kernel_echo_servers(dev: Dev) {
    in_netns(
        &dev.case("tap_client_against_kernel_echo_servers"),
        Duration::from_secs(90),
        false,
        || {
            make_tap("tap0", None);
            let _servers = Background::start(
                "socat TCP6-LISTEN:8000,fork,reuseaddr,ipv6only=0 EXEC:cat & \
             socat TCP-LISTEN:8001,fork,reuseaddr SYSTEM:'stdbuf -o0 tr a-z A-Z' & \
             python3 -c '
from socket import *
s = socket(AF_INET6, SOCK_DGRAM)
s.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 0)
s.bind((\"::\", 8000))
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
' & wait",
            );
            sh(
                "for i in $(seq 100); do ss -Hltn 'sport = :8001' | grep -q . && ss -Hltn 'sport = :8000' | grep -q . && \
            ss -Hlun 'sport = :8000' | grep -q . && exit 0; sleep 0.05; done; exit 1",
            );
            let client = example("tap_client");
            let device = dev.with(&[]).join(" ");
            let run = |args: &str| {
                sh_output(
                    &format!("{} {args} {device}", client.display()),
                    Duration::from_secs(30),
                )
            };
            let text = |o: &Output| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            };

            let tcp = run("--count 3");
            println!("{}", text(&tcp));
            assert!(tcp.status.success(), "TCP over IPv4: {}", text(&tcp));
            assert_eq!(
                text(&tcp)
                    .matches(&format!("Received: {SEED_MESSAGE}"))
                    .count(),
                3
            );

            let tcp6 = run("fdaa::100 8000 --message 'over IPv6'");
            assert!(tcp6.status.success(), "TCP over IPv6: {}", text(&tcp6));
            assert!(text(&tcp6).contains("Received: over IPv6"));

            let udp = run("--udp --count 2");
            assert!(udp.status.success(), "UDP: {}", text(&udp));
            assert_eq!(text(&udp).matches("Received: ").count(), 2);
            let udp6 = run("fdaa::100 --udp");
            assert!(udp6.status.success(), "UDP over IPv6: {}", text(&udp6));

            let wrong = run("192.168.69.100 8001 --message lower");
            assert_eq!(
                wrong.status.code(),
                Some(1),
                "a wrong echo must fail: {}",
                text(&wrong)
            );
            assert!(text(&wrong).contains("Mismatch"), "{}", text(&wrong));
            let refused = run("192.168.69.100 8002");
            assert_eq!(
                refused.status.code(),
                Some(1),
                "no server must fail: {}",
                text(&refused)
            );
            assert!(text(&refused).contains("Refused"), "{}", text(&refused));
        },
    );
}

/// Case 7: `--pcap` writes a capture that `tcpdump -r` (or `tshark -r`) reads, with the
/// exchange in it.
fn pcap_capture_is_readable(dev: Dev) {
    in_netns(
        &dev.case("pcap_capture_is_readable"),
        Duration::from_secs(60),
        false,
        || {
            // One file per device variant: the variants run at the same time.
            let pcap = &format!("/tmp/smolecho-netns-test-{}.pcap", std::process::id());
            let _ = std::fs::remove_file(pcap);
            let server = Server::start(&dev.with(&["--pcap", pcap]));
            let echo = seed_tcp_client(SERVER_V4, SEED_MESSAGE.as_bytes()).expect("tcp echo");
            assert_eq!(echo, SEED_MESSAGE.as_bytes());
            assert_eq!(
                seed_udp_client(SERVER_V6, b"udp in the capture"),
                b"udp in the capture"
            );
            server.stop();
            let reader = if sh_output("command -v tshark", Duration::from_secs(5))
                .status
                .success()
            {
                "tshark -n -r"
            } else {
                "tcpdump -nn -r"
            };
            let dump = sh(&format!("{reader} {pcap} 2>/dev/null"));
            println!("{reader} {pcap}:\n{dump}");
            let _ = std::fs::remove_file(pcap);
            assert!(
                dump.lines().count() >= 8,
                "handshake, data, FINs and UDP: {dump}"
            );
            assert!(dump.contains("192.168.69.1"), "{dump}");
            assert!(dump.contains("8000"), "{dump}");
            assert!(
                dump.contains("fdaa::1"),
                "the IPv6 UDP echo is captured: {dump}"
            );
            assert!(
                dump.contains("ARP") || dump.contains("arp") || dump.contains("who-has"),
                "link-level frames are captured: {dump}"
            );
        },
    );
}

/// `--drop-chance` and `--corrupt-chance` (smoltcp's FaultInjector): frames are lost and
/// damaged, TCP recovers, and the echo is still exact.
fn fault_injection_still_echoes_exactly(dev: Dev) {
    in_netns(
        &dev.case("fault_injection_still_echoes_exactly"),
        Duration::from_secs(90),
        false,
        || {
            let server = Server::start(&dev.with(&["--drop-chance", "5", "--corrupt-chance", "5"]));
            let mut payload = vec![0u8; 200_000];
            Pattern(7).fill(&mut payload);
            let mut s =
                TcpStream::connect_timeout(&endpoint(SERVER_V4, PORT), Duration::from_secs(30))
                    .expect("connect (SYNs may be dropped, the kernel retries)");
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let mut tx = s.try_clone().expect("clone");
            let data = payload.clone();
            let writer = thread::spawn(move || tx.write_all(&data));
            let mut echo = vec![0u8; payload.len()];
            s.read_exact(&mut echo)
                .expect("the whole echo despite faults");
            writer.join().expect("writer").expect("write");
            assert!(echo == payload, "echo differs under fault injection");
            drop(s);
            let c = server.stop();
            assert_eq!(c.get("tcp.bytes_out"), payload.len() as u64);
        },
    );
}

/// Case 8: without privileges, a missing TAP gives the clear message with the exact `ip`
/// commands, exit status 1, no panic; and a TAP made for that user is used without root.
///
/// The case runs in a private mount namespace too, where a tmpfs over /dev/net holds a
/// world-accessible tun node (as most distributions ship it), so what is tested is the TAP's
/// own permission check, whatever the mode of this machine's /dev/net/tun.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn missing_tap_without_privileges() {
    in_netns(
        "missing_tap_without_privileges",
        Duration::from_secs(60),
        true,
        || {
            sh("mount -t tmpfs -o mode=0755 tmpfs /dev/net && mknod -m 0666 /dev/net/tun c 10 200");
            let nobody = [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ];
            let bin = example("tap_server");
            let out = Command::new(nobody[0])
                .args(&nobody[1..])
                .arg(&bin)
                .args(["--tap", "smoltap9"])
                .env("RUST_BACKTRACE", "1")
                .output()
                .expect("run tap_server as nobody");
            let stderr = String::from_utf8_lossy(&out.stderr);
            println!("tap_server as nobody, no TAP:\n{stderr}");
            assert_eq!(out.status.code(), Some(1), "exit status 1");
            for expected in [
                "smoltap9 does not exist",
                "CAP_NET_ADMIN",
                "ip tuntap add dev smoltap9 mode tap user $USER",
                "ip link set dev smoltap9 up",
                "ip addr add 192.168.69.100/24 dev smoltap9",
                "ip -6 addr add fdaa::100/64 dev smoltap9",
            ] {
                assert!(
                    stderr.contains(expected),
                    "message lacks {expected:?}:\n{stderr}"
                );
            }
            assert!(
                !stderr.contains("panicked") && !stderr.contains("backtrace"),
                "{stderr}"
            );
            assert!(out.stdout.is_empty(), "no readiness line");
            assert!(!tap_exists("smoltap9"), "nothing was created");

            // Once the TAP exists for that user, it runs without root.
            make_tap("smoltap9", Some("65534"));
            let server = Server::start_as(&nobody, &["--tap", "smoltap9"]);
            let echo = seed_tcp_client(SERVER_V4, SEED_MESSAGE.as_bytes()).expect("tcp echo");
            assert_eq!(echo, SEED_MESSAGE.as_bytes());
            let c = server.stop();
            assert_eq!(c.get("tcp.accepted"), 1);
        },
    );
}

fn tap_exists(name: &str) -> bool {
    sh_output(&format!("ip link show dev {name}"), Duration::from_secs(5))
        .status
        .success()
}

/// The other options: other addresses (`--ip`, `--host-ip`), other ports, one slot, and an
/// idle timeout that drops a silent client and frees its slot for the next one.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn options_addresses_ports_and_idle_timeout() {
    in_netns(
        "options_addresses_ports_and_idle_timeout",
        Duration::from_secs(60),
        false,
        || {
            let server = Server::start(&[
                "--ip",
                "10.9.0.1/24",
                "--host-ip",
                "10.9.0.100/24",
                "--port",
                "7007",
                "--udp-port",
                "7008",
                "--slots",
                "1",
                "--idle-timeout",
                "1",
            ]);
            let addr = |port: u16| -> SocketAddr { format!("10.9.0.1:{port}").parse().unwrap() };
            // A client that connects and says nothing holds the only slot until the timeout.
            let mut silent =
                TcpStream::connect_timeout(&addr(7007), Duration::from_secs(10)).expect("connect");
            silent
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let t0 = Instant::now();
            let mut buf = [0u8; 16];
            let ended = silent.read(&mut buf);
            let idle = t0.elapsed();
            println!("silent client dropped after {idle:?}: {ended:?}");
            assert!(
                matches!(ended, Ok(0)) || ended.is_err(),
                "the server ends an idle connection: {ended:?}"
            );
            assert!(
                idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
                "dropped after about 1 s, not {idle:?}"
            );
            // The slot is free again.
            let mut s =
                TcpStream::connect_timeout(&addr(7007), Duration::from_secs(10)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            s.write_all(b"port 7007").expect("write");
            let mut echo = [0u8; 9];
            s.read_exact(&mut echo).expect("echo");
            assert_eq!(&echo, b"port 7007");
            drop(s);
            let udp = UdpSocket::bind("10.9.0.100:0").expect("bind");
            udp.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            udp.send_to(b"port 7008", addr(7008)).expect("send");
            let (n, from) = udp.recv_from(&mut buf).expect("udp echo");
            assert_eq!((&buf[..n], from), (&b"port 7008"[..], addr(7008)));
            // Nothing answers on the default port.
            assert!(TcpStream::connect_timeout(&addr(8000), Duration::from_secs(5)).is_err());
            let c = server.stop();
            assert_eq!(c.get("tcp.timed_out"), 1);
            assert_eq!(c.get("tcp.accepted"), 2);
            assert_eq!(c.get("udp.datagrams_out"), 1);
        },
    );
}

/// `--gateway`: replies to a client outside the TAP's subnets (an address on the namespace's
/// `lo`) go through the Linux side as router. Without the gateway smoltcp has no route back,
/// which the first half checks.
#[test]
#[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
fn gateway_routes_replies_off_link() {
    in_netns(
        "gateway_routes_replies_off_link",
        Duration::from_secs(60),
        false,
        || {
            sh("ip addr add 172.16.0.1/32 dev lo && ip -6 addr add fd00:16::1/128 dev lo");
            // ARP requests from the TAP's own subnet address: smoltcp (rightly) ignores ARP
            // from senders outside its networks.
            sh("sysctl -qw net.ipv4.conf.all.arp_announce=2");
            // The first SYN may be lost while the neighbour is resolved: allow a retry.
            let off_link = |local: &str, server: &str, wait: u32| -> std::io::Result<Vec<u8>> {
                let cmd = format!(
                    "timeout 15 socat -T 3 - TCP:{server}:8000,bind={local},connect-timeout={wait} \
                     <<< 'off link'"
                );
                let out = sh_output(&cmd, Duration::from_secs(20));
                if out.status.success() && !out.stdout.is_empty() {
                    Ok(out.stdout)
                } else {
                    Err(std::io::Error::other(
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    ))
                }
            };
            let server = Server::start(&[]);
            assert!(
                off_link("172.16.0.1", SERVER_V4, 2).is_err(),
                "without a gateway there is no route back"
            );
            server.stop();
            let server = Server::start(&["--gateway", "192.168.69.100", "--gateway", "fdaa::100"]);
            assert_eq!(
                off_link("172.16.0.1", SERVER_V4, 8).expect("IPv4"),
                b"off link\n"
            );
            assert_eq!(
                off_link("[fd00:16::1]", "[fdaa::1]", 8).expect("IPv6"),
                b"off link\n"
            );
            let c = server.stop();
            assert_eq!(c.get("tcp.accepted"), 2);
        },
    );
}

/// Every frame with a wrong checksum is dropped, also when the offload device (not smoltcp)
/// checks them: raw frames from the Linux side (AF_PACKET on tap0, so the kernel neither
/// checks nor marks them) to the echo port, each kind once wrong and once right, over IPv4
/// and IPv6. What the server answers is watched with tcpdump on tap0: the right ones are
/// echoed (UDP) or answered (a TCP SYN gets SYN-ACK), the wrong ones get nothing.
fn corrupt_frames_are_dropped(dev: Dev) {
    in_netns(
        &dev.case("corrupt_frames_are_dropped"),
        Duration::from_secs(60),
        false,
        || {
            let server = Server::start(&dev.with(&[]));
            // The neighbour entries first, so no answer waits for ARP or ND.
            assert_eq!(seed_udp_client(SERVER_V4, b"warm"), b"warm");
            assert_eq!(seed_udp_client(SERVER_V6, b"warm"), b"warm");
            // (/sys shows the namespace it was mounted in, not this one.)
            let link = sh("ip -o link show dev tap0");
            let host_mac: Vec<u8> = link
                .split_whitespace()
                .skip_while(|w| *w != "link/ether")
                .nth(1)
                .expect("tap0's MAC")
                .split(':')
                .map(|b| u8::from_str_radix(b, 16).expect("a MAC"))
                .collect();
            let host_mac: [u8; 6] = host_mac.try_into().expect("6 bytes");
            // One file per device variant: the variants run at the same time.
            let seen_file = format!("/tmp/smolecho-corrupt-{}.txt", std::process::id());
            let capture = Background::start(&format!(
                "exec timeout 30 tcpdump -i tap0 -nn -l \
                 '(udp or tcp) and (src host 192.168.69.1 or src host fdaa::1)' \
                 > {seen_file} 2>/dev/null"
            ));
            thread::sleep(Duration::from_millis(800));
            let mut link = RawLink::open("tap0").expect("AF_PACKET socket on tap0");
            // Source ports say what each frame is: 4xxx1 right, 4xxx2 wrong.
            let addr =
                |s: &str| IpAddress::from(s.parse::<std::net::IpAddr>().expect("an address"));
            let families = [
                (addr("192.168.69.100"), addr(SERVER_V4), 40_000u16, 20usize),
                (addr("fdaa::100"), addr(SERVER_V6), 41_000, 40),
            ];
            let mut wrong = 0;
            for (host, server_ip, base, ip_len) in families {
                let from = |port| frames::Peer {
                    mac: EthernetAddress(host_mac),
                    addr: host,
                    port,
                };
                let to = frames::Peer {
                    mac: EthernetAddress(SERVER_MAC),
                    addr: server_ip,
                    port: PORT,
                };
                let udp = |port: u16| frames::udp(&from(port), &to, b"checked?").to_vec();
                let syn = |port: u16| frames::syn(&from(port), &to, 1000).to_vec();
                let transport = 14 + ip_len;
                let mut send = |f: &[u8]| link.send(f).expect("send a frame");
                send(&udp(base + 1));
                let mut bad = udp(base + 2);
                bad[transport + 8] ^= 0x01; // payload bit: the UDP checksum is now wrong
                send(&bad);
                send(&syn(base + 11));
                let mut bad = syn(base + 12);
                bad[transport + 4] ^= 0x80; // sequence number bit: the TCP checksum is now wrong
                send(&bad);
                wrong += 2;
                if ip_len == 20 {
                    // A right UDP checksum under a wrong IPv4 header checksum.
                    let mut bad = udp(base + 22);
                    bad[14 + 10] ^= 0x01;
                    send(&bad);
                    wrong += 1;
                }
            }
            thread::sleep(Duration::from_millis(1500));
            drop(capture);
            let seen = std::fs::read_to_string(&seen_file).unwrap_or_default();
            println!("the server sent:\n{seen}");
            for base in [40_000u16, 41_000] {
                for right in [base + 1, base + 11] {
                    assert!(
                        seen.contains(&format!(".{right}:")),
                        "no answer to the right frame from port {right}:\n{seen}"
                    );
                }
                for bad in [base + 2, base + 12, base + 22] {
                    assert!(
                        !seen.contains(&format!(".{bad}:")),
                        "a frame with a wrong checksum (port {bad}) was answered:\n{seen}"
                    );
                }
            }
            let c = server.stop();
            // The warm-up datagrams (two, more if one was retried) and the two right ones.
            assert!(c.get("udp.datagrams_in") >= 4);
            if dev == Dev::Offload {
                // The IPv4 header checksum is smoltcp's; the transport ones the device's.
                assert_eq!(c.get("frames.rx_bad_checksum"), wrong - 1);
            }
        },
    );
}
