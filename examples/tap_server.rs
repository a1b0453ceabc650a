//! TCP and UDP echo (RFC 862) with smolecho on a Linux TAP device.
//!
//! ```text
//! cargo run --release --example tap_server -- [--tap tap0] [--slots 8] [--pcap echo.pcap] ...
//! ```
//!
//! It attaches to the TAP (or creates it when it may), prints one `listening on ...` line,
//! then sleeps on the TAP descriptor until a frame arrives or the echo node's next deadline.
//! SIGINT or SIGTERM prints the final counters and exits 0. `--help` lists the options.
//!
//! The storage is built once at start-up, sized by `--slots` (1 to 1024): the same slices
//! firmware takes from its statics, here from the heap.

mod support;

use std::cell::RefCell;
use std::error::Error;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::RawFd;
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;

use smolecho::smoltcp::iface::{Interface, SocketStorage};
use smolecho::smoltcp::phy::{Device, FaultInjector, PcapMode, PcapSink, PcapWriter};
use smolecho::smoltcp::socket::udp::PacketMetadata;
use smolecho::smoltcp::time::Duration;
use smolecho::smoltcp::wire::EthernetAddress;
use smolecho::{
    EchoNode, HeldSyn, Sockets, TcpBuffers, TcpConfig, TcpCounters, TcpSlot, UdpBuffers, UdpConfig,
    UdpCounters,
};

use support::cli::{self, OverflowMode, ServerOptions};
use support::tap::{self, ErrorSlot, FrameCounters, Origin};
use support::vnet_tap;
use support::{Clock, Tap, stop_on_signals, stop_requested, wait_readable};

/// UDP: datagrams queued each way, and payload bytes each way (also the largest datagram).
const UDP_PACKETS: usize = 64;
const UDP_BYTES: usize = 96 * 1024;
/// Held SYNs kept for replay (a listen backlog, as `listen(fd, 256)`).
const SYN_BACKLOG: usize = 256;

/// The server's MAC address (locally administered).
const MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);

type BoxError = Box<dyn Error>;

fn main() -> ExitCode {
    let options = cli::parse_checked(ServerOptions::check);
    // The core's connection events (debug level) and smoltcp's own, on stderr when RUST_LOG
    // asks for them (RUST_LOG=debug, or RUST_LOG=smolecho=debug for the core's alone).
    env_logger::init();
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tap_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &ServerOptions) -> Result<(), BoxError> {
    stop_on_signals()?;
    if options.offload {
        let (mut device, origin) = vnet_tap::open(&options.tap, &options.host_ips)?;
        // The offload device applies the faults itself, on the wire side of the checksums
        // (smoltcp's FaultInjector above it would bypass them).
        let seed = Clock::new().now().total_micros() as u32;
        device.set_faults(options.drop_chance, options.corrupt_chance, seed);
        start(options, device, origin, false)
    } else {
        let (device, origin) = tap::open(&options.tap, &options.host_ips)?;
        let inject = options.drop_chance > 0 || options.corrupt_chance > 0;
        start(options, device, origin, inject)
    }
}

/// Take the echo storage for `--slots` and serve on `device`, under smoltcp's
/// `FaultInjector` when `inject`.
fn start<T: Tap>(
    options: &ServerOptions,
    device: T,
    origin: Origin,
    inject: bool,
) -> Result<(), BoxError> {
    if origin == Origin::Attached && !tap::is_up(device.name()) {
        eprintln!(
            "tap_server: warning: {0} is down; bring it up with: sudo ip link set dev {0} up",
            device.name()
        );
    }
    layered(options, device, inject)
}

/// Put the requested smoltcp test layers (fault injection, capture) over the TAP and serve.
fn layered<T: Tap>(options: &ServerOptions, device: T, inject: bool) -> Result<(), BoxError> {
    let io = Io {
        name: device.name().to_string(),
        ip_mtu: device.ip_mtu(),
        fd: device.as_raw_fd(),
        error: device.error_slot(),
        frames: device.counters(),
    };
    let clock = Clock::new();
    let faults = |device: T| {
        // The seed only has to differ between runs.
        let mut injector = FaultInjector::new(device, clock.now().total_micros() as u32 | 1);
        injector.set_drop_chance(options.drop_chance);
        injector.set_corrupt_chance(options.corrupt_chance);
        injector
    };
    let sink = match &options.pcap {
        Some(path) => Some(PcapFile::create(path, io.error.clone())?),
        None => None,
    };
    // The capture sits above the fault injector: it records what smoltcp receives and sends.
    match (inject, sink) {
        (false, None) => serve(options, device, io, clock),
        (true, None) => serve(options, faults(device), io, clock),
        (false, Some(sink)) => {
            let device = PcapWriter::new(device, sink, PcapMode::Both);
            serve(options, device, io, clock)
        }
        (true, Some(sink)) => {
            let device = PcapWriter::new(faults(device), sink, PcapMode::Both);
            serve(options, device, io, clock)
        }
    }
}

/// What the poll loop needs of the TAP below whatever layers wrap it.
struct Io {
    name: String,
    /// The link's IP MTU (the offload device announces more to smoltcp).
    ip_mtu: usize,
    fd: RawFd,
    error: ErrorSlot,
    frames: Rc<RefCell<FrameCounters>>,
}

fn serve<D: Device>(
    options: &ServerOptions,
    mut device: D,
    io: Io,
    clock: Clock,
) -> Result<(), BoxError> {
    let mut iface = support::interface(&mut device, MAC, &clock, &options.ips, &options.gateways)?;

    // The pool is sized by --slots, once, from the heap: the program's only allocations.
    // Untouched buffer pages stay zero pages of the kernel.
    let slots = options.slots;
    let size = options.buffer_size();
    let mut sockets = Sockets::new(leak((0..=slots).map(|_| SocketStorage::EMPTY)));
    let tcp = TcpBuffers::new(
        leak((0..slots).map(|_| TcpSlot::EMPTY)),
        vec![0; slots * size].leak(),
        vec![0; slots * size].leak(),
    )
    // Defer keeps up to SYN_BACKLOG held SYNs and serves them as soon as a slot frees.
    .with_backlog(leak((0..SYN_BACKLOG).map(|_| HeldSyn::EMPTY)));
    let udp = UdpBuffers::new(
        leak((0..2 * UDP_PACKETS).map(|_| PacketMetadata::EMPTY)),
        vec![0; 3 * UDP_BYTES].leak(),
    );
    let tcp_config = TcpConfig {
        port: options.port,
        overflow: options.overflow.into(),
        idle_timeout: options.idle_timeout.0,
        ..TcpConfig::DEFAULT
    };
    let mut node = EchoNode::new(
        &mut sockets,
        tcp_config,
        tcp,
        UdpConfig::on_port(options.udp_port()),
        udp,
    )
    .map_err(|e| format!("cannot start the echo services: {e}"))?;

    println!("{}", listening_line(options, &io.name, &iface, io.ip_mtu));

    let mut next_stats = options.stats.0.map(|period| clock.now() + period);
    while !stop_requested() {
        let now = clock.now();
        node.poll(now, &mut iface, &mut device, &mut sockets);
        if let Some(err) = io.error.borrow_mut().take() {
            return Err(format!("I/O error on the TAP or the capture file: {err}").into());
        }
        if let (Some(at), Some(period)) = (next_stats, options.stats.0)
            && now >= at
        {
            println!(
                "stats: {}",
                summary(
                    node.tcp_counters(),
                    node.udp_counters(),
                    &io.frames.borrow()
                )
            );
            next_stats = Some(now + period);
        }
        let now = clock.now();
        let stats_delay = next_stats.map(|at| if at > now { at - now } else { Duration::ZERO });
        let delay = match (node.poll_delay(now, &mut iface, &sockets), stats_delay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        wait_readable(io.fd, delay)?;
    }
    println!(
        "final: {}",
        summary(
            node.tcp_counters(),
            node.udp_counters(),
            &io.frames.borrow()
        )
    );
    // Dropping the device flushes the capture file.
    drop(device);
    if let Some(err) = io.error.borrow_mut().take() {
        return Err(format!("I/O error: {err}").into());
    }
    Ok(())
}

fn listening_line(options: &ServerOptions, name: &str, iface: &Interface, ip_mtu: usize) -> String {
    let addrs: Vec<String> = iface.ip_addrs().iter().map(|a| a.to_string()).collect();
    let overflow = match options.overflow {
        OverflowMode::Defer => "defer",
        OverflowMode::Refuse => "refuse",
    };
    let idle = match options.idle_timeout.0 {
        Some(d) => format!("{} s", d.secs()),
        None => "off".into(),
    };
    format!(
        "listening on {} (mtu {}{}) at {}: tcp port {}, udp port {}, {} slots of {} KiB + {} KiB, overflow {}, idle timeout {}",
        name,
        ip_mtu,
        if options.offload { ", offload" } else { "" },
        addrs.join(" "),
        options.port,
        options.udp_port(),
        options.slots,
        options.buffer_size() >> 10,
        options.buffer_size() >> 10,
        overflow,
        idle,
    )
}

fn summary(tcp: TcpCounters, udp: UdpCounters, frames: &FrameCounters) -> String {
    format!(
        "tcp accepted={} active={} closed={} reset={} timed_out={} evicted={} \
         handshake_timeouts={} half_open_recycled={} held_syns={} refused={} bytes_in={} \
         bytes_out={} | udp datagrams_in={} datagrams_out={} dropped={} tx_flushes={} \
         bytes_in={} bytes_out={} | frames rx={} tx={} tx_dropped={} rx_coalesced={} \
         rx_bad_checksum={} rx_unverifiable={} tx_segmented={} tx_oversize={} rx_acks_rescued={}",
        tcp.accepted,
        tcp.active(),
        tcp.closed,
        tcp.reset,
        tcp.timed_out,
        tcp.evicted,
        tcp.handshake_timeouts,
        tcp.half_open_recycled,
        tcp.held_syns,
        tcp.refused,
        tcp.bytes_in,
        tcp.bytes_out,
        udp.datagrams_in,
        udp.datagrams_out,
        udp.dropped,
        udp.tx_flushes,
        udp.bytes_in,
        udp.bytes_out,
        frames.received,
        frames.sent,
        frames.tx_dropped,
        frames.rx_coalesced,
        frames.rx_bad_checksum,
        frames.rx_unverifiable,
        frames.tx_segmented,
        frames.tx_oversize,
        frames.rx_acks_rescued,
    )
}

/// A pcap file as smoltcp's capture sink. Write errors do not panic (as smoltcp's own sink
/// for `Write` does): the first one goes to the device's error slot and ends the server.
struct PcapFile {
    out: BufWriter<File>,
    error: ErrorSlot,
}

impl PcapFile {
    fn create(path: &Path, error: ErrorSlot) -> Result<Self, BoxError> {
        let file = File::create(path)
            .map_err(|e| format!("cannot create the capture file {}: {e}", path.display()))?;
        Ok(Self {
            out: BufWriter::new(file),
            error,
        })
    }

    fn record(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            let mut slot = self.error.borrow_mut();
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }
}

impl PcapSink for PcapFile {
    fn write(&mut self, data: &[u8]) {
        let result = self.out.write_all(data);
        self.record(result);
    }

    fn flush(&mut self) {
        // smoltcp flushes after every packet, so the file is complete while the server runs.
        let result = self.out.flush();
        self.record(result);
    }
}

/// A slice that lives as long as the program, from the heap.
fn leak<T>(items: impl Iterator<Item = T>) -> &'static mut [T] {
    items.collect::<Vec<T>>().leak()
}
