//! The core's echo against a bare smoltcp echo loop on the same simulated link, for
//! instruction counting under callgrind (see `BENCHMARKS.md`, `benches/callgrind.sh`).
//!
//! ```text
//! sim_echo core|core-no-recovery|bare MIB
//! ```
//!
//! One client (a plain smoltcp TCP socket, side B of a [`smolecho::sim::Link`]) sends `MIB`
//! MiB through one connection and reads the echo back, checking every byte. The server (side
//! A) is either
//!
//! - `core`: an [`EchoNode`] with 8 slots of 128 KiB + 128 KiB and a UDP service, as
//!   `examples/tap_server.rs` builds it, polled with [`EchoNode::poll`]
//!   (`core-no-recovery`: the same with loss and reordering recovery off); or
//! - `bare`: the loop one would write by hand with smoltcp alone: the same 8 sockets with the
//!   same buffers and settings (Nagle off, 10 ms ACK delay) and a UDP socket, `Interface::poll`
//!   then, per socket, `recv_slice` into a scratch buffer and `send_slice`.
//!
//! All server work happens inside `core_server_round` / `bare_server_round`, so callgrind's
//! inclusive cost of that function is the server's instructions; the rest (client, link,
//! checking) is the same for both. The clock is manual: 20 µs per round.
//!
//! Run without arguments (as `cargo bench` does) it prints its usage and exits 0.

use std::process::ExitCode;

use smolecho::sim::{self, End, Link, Side};
use smolecho::smoltcp::iface::{Interface, SocketHandle, SocketSet, SocketStorage};
use smolecho::smoltcp::socket::{tcp, udp};
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::{IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use smolecho::{EchoNode, Sockets, TcpBuffers, TcpConfig, TcpSlot, UdpBuffers, UdpConfig};

const SLOTS: usize = 8;
const TCP_RX: usize = 128 * 1024;
const TCP_TX: usize = 128 * 1024;
const UDP_PACKETS: usize = 64;
const UDP_BYTES: usize = 96 * 1024;
/// The bare loop's scratch buffer (the core copies through a 2 KiB one on 64-bit hosts).
const SCRATCH: usize = 4096;
/// Frames each direction of the link holds: more than a full 128 KiB window of segments.
const LINK_FRAMES: usize = 256;
const PORT: u16 = 7;
const CLIENT_BUF: usize = 256 * 1024;
/// Rounds without progress before the run counts as stuck.
const STUCK: u32 = 100_000;

type SimLink = Link<LINK_FRAMES>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, mib) = match (args.first().map(String::as_str), args.get(1)) {
        (Some(m @ ("core" | "core-no-recovery" | "bare")), Some(n)) => match n.parse::<u64>() {
            Ok(n) if n > 0 => (m.to_string(), n),
            _ => return usage(),
        },
        _ => return usage(),
    };
    match run(&mode, mib << 20) {
        Ok(rounds) => {
            println!("mode={mode} mib={mib} rounds={rounds} verified=1");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sim_echo {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    println!("usage: sim_echo core|core-no-recovery|bare MIB");
    ExitCode::SUCCESS
}

fn leak<T>(value: T) -> &'static mut T {
    Box::leak(Box::new(value))
}

/// A server under test: one round of its work on side A.
trait Server {
    fn round(&mut self, now: Instant, link: &mut SimLink);
}

struct Core {
    iface: Interface,
    sockets: Sockets<'static>,
    node: EchoNode<'static>,
}

impl Server for Core {
    fn round(&mut self, now: Instant, link: &mut SimLink) {
        core_server_round(self, now, &mut link.end(Side::A));
    }
}

#[inline(never)]
fn core_server_round(s: &mut Core, now: Instant, device: &mut End<'_, LINK_FRAMES>) {
    s.node.poll(now, &mut s.iface, device, &mut s.sockets);
}

struct Bare {
    iface: Interface,
    sockets: SocketSet<'static>,
    tcp: [SocketHandle; SLOTS],
    udp: SocketHandle,
    scratch: [u8; SCRATCH],
}

impl Server for Bare {
    fn round(&mut self, now: Instant, link: &mut SimLink) {
        bare_server_round(self, now, &mut link.end(Side::A));
    }
}

fn bare_configure(socket: &mut tcp::Socket<'_>) {
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(Some(Duration::from_millis(10)));
}

#[inline(never)]
fn bare_server_round(s: &mut Bare, now: Instant, device: &mut End<'_, LINK_FRAMES>) {
    s.iface.poll(now, device, &mut s.sockets);
    for &h in &s.tcp {
        let socket = s.sockets.get_mut::<tcp::Socket>(h);
        if !socket.is_open() {
            if socket.listen(PORT).is_ok() {
                bare_configure(socket);
            }
            continue;
        }
        while socket.can_recv() {
            let room = socket.send_capacity() - socket.send_queue();
            let want = room.min(SCRATCH);
            if want == 0 {
                break;
            }
            match socket.recv_slice(&mut s.scratch[..want]) {
                Ok(n) if n > 0 => {
                    let _ = socket.send_slice(&s.scratch[..n]);
                }
                _ => break,
            }
        }
        if !socket.may_recv() && socket.may_send() && socket.send_queue() == 0 {
            socket.close();
        }
    }
    let socket = s.sockets.get_mut::<udp::Socket>(s.udp);
    while socket.can_send() {
        match socket.recv_slice(&mut s.scratch) {
            Ok((n, meta)) => {
                let _ = socket.send_slice(&s.scratch[..n], meta.endpoint);
            }
            Err(_) => break,
        }
    }
}

fn server_addrs() -> [IpCidr; 1] {
    [IpCidr::new(IpAddress::v4(10, 0, 0, 1), 24)]
}

fn core_server(link: &mut SimLink, recovery: bool) -> Core {
    let iface = sim::interface(&mut link.end(Side::A), 1, &server_addrs(), Instant::ZERO);
    let mut sockets = Sockets::new(leak([SocketStorage::EMPTY; SLOTS + 1]).as_mut_slice());
    // Slices from the heap, as a host program sizes its pool (no listen backlog: one client).
    let tcp = TcpBuffers::new(
        vec![TcpSlot::EMPTY; SLOTS].leak(),
        vec![0; SLOTS * TCP_RX].leak(),
        vec![0; SLOTS * TCP_TX].leak(),
    );
    let udp = UdpBuffers::new(
        vec![udp::PacketMetadata::EMPTY; 2 * UDP_PACKETS].leak(),
        vec![0; 3 * UDP_BYTES].leak(),
    );
    let node = EchoNode::new(
        &mut sockets,
        TcpConfig::on_port(PORT),
        tcp,
        UdpConfig::on_port(PORT),
        udp,
    )
    .expect("the node fits its socket set");
    let mut node = node;
    node.set_recovery(recovery);
    Core {
        iface,
        sockets,
        node,
    }
}

fn bare_server(link: &mut SimLink) -> Bare {
    let iface = sim::interface(&mut link.end(Side::A), 1, &server_addrs(), Instant::ZERO);
    let mut sockets = SocketSet::new(leak([SocketStorage::EMPTY; SLOTS + 1]).as_mut_slice());
    let tcp = std::array::from_fn(|_| {
        let rx = leak([0u8; TCP_RX]);
        let tx = leak([0u8; TCP_TX]);
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        );
        socket.listen(PORT).expect("listen");
        bare_configure(&mut socket);
        sockets.add(socket)
    });
    let udp_buffer = || {
        udp::PacketBuffer::new(
            &mut leak([udp::PacketMetadata::EMPTY; UDP_PACKETS])[..],
            &mut leak([0u8; UDP_BYTES])[..],
        )
    };
    let mut socket = udp::Socket::new(udp_buffer(), udp_buffer());
    socket.bind(PORT).expect("bind");
    let udp = sockets.add(socket);
    Bare {
        iface,
        sockets,
        tcp,
        udp,
        scratch: [0; SCRATCH],
    }
}

fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn run(mode: &str, total: u64) -> Result<u64, String> {
    let link: &mut SimLink = leak(Link::new());
    let mut server: Box<dyn Server> = match mode {
        "core" => Box::new(core_server(link, true)),
        "core-no-recovery" => Box::new(core_server(link, false)),
        _ => Box::new(bare_server(link)),
    };
    let client_addrs = [IpCidr::new(IpAddress::v4(10, 0, 0, 2), 24)];
    let mut client_iface = sim::interface(&mut link.end(Side::B), 2, &client_addrs, Instant::ZERO);
    let mut client_sockets = SocketSet::new(leak([SocketStorage::EMPTY; 1]).as_mut_slice());
    let rx = leak([0u8; CLIENT_BUF]);
    let tx = leak([0u8; CLIENT_BUF]);
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx[..]),
        tcp::SocketBuffer::new(&mut tx[..]),
    );
    socket.set_nagle_enabled(false);
    let remote = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)), PORT);
    socket
        .connect(client_iface.context(), remote, 49152)
        .map_err(|e| format!("connect: {e:?}"))?;
    let handle = client_sockets.add(socket);

    let (mut sent, mut got) = (0u64, 0u64);
    let mut now = Instant::ZERO;
    let (mut rounds, mut idle) = (0u64, 0u32);
    let mut chunk = vec![0u8; 16 * 1024];
    while got < total {
        server.round(now, link);
        client_iface.poll(now, &mut link.end(Side::B), &mut client_sockets);
        let socket = client_sockets.get_mut::<tcp::Socket>(handle);
        let before = (sent, got);
        while sent < total && socket.can_send() {
            let n = socket
                .send(|buf| {
                    let n = buf.len().min((total - sent) as usize);
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        *b = pattern_byte(sent + i as u64);
                    }
                    (n, n)
                })
                .map_err(|e| format!("send: {e:?}"))?;
            if n == 0 {
                break;
            }
            sent += n as u64;
        }
        while socket.can_recv() {
            let n = socket
                .recv_slice(&mut chunk)
                .map_err(|e| format!("recv: {e:?}"))?;
            for (i, &b) in chunk[..n].iter().enumerate() {
                if b != pattern_byte(got + i as u64) {
                    return Err(format!("byte mismatch at offset {}", got + i as u64));
                }
            }
            got += n as u64;
        }
        if got > sent {
            return Err("more bytes echoed than sent".into());
        }
        client_iface.poll(now, &mut link.end(Side::B), &mut client_sockets);
        idle = if (sent, got) == before { idle + 1 } else { 0 };
        if idle > STUCK {
            return Err(format!("stuck after {got} of {total} bytes"));
        }
        rounds += 1;
        now += Duration::from_micros(20);
    }
    Ok(rounds)
}
