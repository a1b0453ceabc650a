//! An echo client on smoltcp over a Linux TAP device: the seed's `echo-client.py` (TCP) and
//! `udpc.py` (`--udp`), for any echo server the TAP reaches.
//!
//! ```text
//! cargo run --release --example tap_client -- [HOST] [PORT] [--tap tap0] [--ip 192.168.69.2/24] \
//!     [--udp] [--message TEXT] [--count N]
//! ```
//!
//! Defaults: host 192.168.69.100 (the Linux side of the TAP), port 8000. It prints
//! `Received: ...` for each echo and exits 0 only when every echo matched.

mod support;

use std::error::Error;
use std::process::ExitCode;

use smolecho::smoltcp::iface::{Interface, SocketStorage};
use smolecho::smoltcp::time::Instant;
use smolecho::smoltcp::wire::{EthernetAddress, IpEndpoint};
use smolecho::{
    Sockets, TcpClientConfig, TcpClientStorage, TcpEchoClient, TcpOutcome, UdpClientConfig,
    UdpClientStorage, UdpEchoClient, UdpOutcome,
};

use support::cli::{self, ClientOptions};
use support::{
    Clock, Tap, delay_until, earliest, leak, stop_on_signals, stop_requested, tap, vnet_tap,
    wait_readable,
};

/// The client's MAC address (locally administered).
const MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);
/// TCP socket buffers; longer messages stream through them.
const TCP_BUFFER: usize = 64 * 1024;
/// Largest UDP message.
const UDP_BYTES: usize = 64 * 1024;
/// First local port; each exchange takes the next one.
const LOCAL_PORT: u16 = 49152;

type BoxError = Box<dyn Error>;

fn main() -> ExitCode {
    let options = cli::parse_checked(ClientOptions::check);
    // The core's connection events (debug level) and smoltcp's own, on stderr when RUST_LOG
    // asks for them (RUST_LOG=debug, or RUST_LOG=smolecho=debug for the core's alone).
    env_logger::init();
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tap_client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a service step found: done, or the deadline to wake up for.
enum Step<T> {
    Done(T),
    Wait(Option<Instant>),
}

impl<T> Step<T> {
    fn from(done: Option<T>, deadline: Option<Instant>) -> Self {
        match done {
            Some(done) => Step::Done(done),
            None => Step::Wait(deadline),
        }
    }
}

/// Everything a run drives: the TAP, the interface, the sockets, the clock.
struct Host<D> {
    device: D,
    iface: Interface,
    sockets: Sockets<'static>,
    clock: Clock,
}

impl<D: Tap> Host<D> {
    /// Poll the interface and `service` until it is done, sleeping on the TAP until the next
    /// deadline in between. `None` when interrupted by a signal.
    fn drive<T>(
        &mut self,
        mut service: impl FnMut(&mut Self) -> Step<T>,
    ) -> Result<Option<T>, BoxError> {
        let error = self.device.error_slot();
        while !stop_requested() {
            let now = self.clock.now();
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            if let Some(err) = error.borrow_mut().take() {
                return Err(format!("TAP device error: {err}").into());
            }
            let deadline = match service(self) {
                Step::Done(done) => {
                    // Let the last segments (our FIN, ACKs) leave before the next step.
                    self.iface
                        .poll(self.clock.now(), &mut self.device, &mut self.sockets);
                    return Ok(Some(done));
                }
                Step::Wait(deadline) => deadline,
            };
            let now = self.clock.now();
            let at = earliest(self.iface.poll_at(now, &self.sockets), deadline);
            wait_readable(self.device.as_raw_fd(), delay_until(now, at))?;
        }
        Ok(None)
    }
}

fn run(options: &ClientOptions) -> Result<bool, BoxError> {
    stop_on_signals()?;
    if options.offload {
        let (device, _origin) = vnet_tap::open(&options.tap, &options.host_ips)?;
        run_on(options, device)
    } else {
        let (device, _origin) = tap::open(&options.tap, &options.host_ips)?;
        run_on(options, device)
    }
}

fn run_on<D: Tap>(options: &ClientOptions, mut device: D) -> Result<bool, BoxError> {
    let clock = Clock::new();
    let iface = support::interface(&mut device, MAC, &clock, &options.ips, &options.gateways)?;
    let storage: &'static mut [SocketStorage<'static>; 1] = leak([SocketStorage::EMPTY]);
    let mut host = Host {
        device,
        iface,
        sockets: Sockets::new(storage),
        clock,
    };
    let remote = IpEndpoint::new(options.host, options.port);
    let message: &'static [u8] = leak(options.message.clone().into_bytes());
    println!(
        "tap_client: {} {} bytes to {remote} over {}, {} time(s)",
        if options.udp { "UDP" } else { "TCP" },
        message.len(),
        host.device.name(),
        options.count
    );
    if options.udp {
        udp_runs(&mut host, options, remote, message)
    } else {
        tcp_runs(&mut host, options, remote, message)
    }
}

fn tcp_runs<D: Tap>(
    host: &mut Host<D>,
    options: &ClientOptions,
    remote: IpEndpoint,
    message: &'static [u8],
) -> Result<bool, BoxError> {
    let config = TcpClientConfig {
        timeout: options.timeout,
        ..TcpClientConfig::DEFAULT
    };
    let storage = leak(TcpClientStorage::<TCP_BUFFER, TCP_BUFFER>::new());
    let mut client = TcpEchoClient::new(config, storage, &mut host.sockets)?;
    for run in 0..options.count {
        let port = LOCAL_PORT.wrapping_add((run % 16000) as u16);
        let now = host.clock.now();
        client.connect(
            now,
            &mut host.iface,
            &mut host.sockets,
            remote,
            port,
            message,
        )?;
        let outcome = host.drive(|h| {
            client.service(h.clock.now(), &mut h.sockets);
            Step::from(client.outcome(), client.poll_at())
        })?;
        match outcome {
            Some(TcpOutcome::Echoed { connect, rtt, .. }) => {
                println!("Received: {}", String::from_utf8_lossy(message));
                println!(
                    "  connect {} us, echo round trip {} us",
                    connect.total_micros(),
                    rtt.total_micros()
                );
            }
            Some(other) => {
                eprintln!("tap_client: exchange {} failed: {other:?}", run + 1);
                return Ok(false);
            }
            None => return Ok(false),
        }
        // Let the close finish, so the server sees a clean FIN exchange (bounded by the
        // client's own timeout).
        host.drive(|h| {
            client.service(h.clock.now(), &mut h.sockets);
            let idle = client.is_idle();
            Step::from(idle.then_some(()), client.poll_at())
        })?;
    }
    Ok(true)
}

fn udp_runs<D: Tap>(
    host: &mut Host<D>,
    options: &ClientOptions,
    remote: IpEndpoint,
    message: &'static [u8],
) -> Result<bool, BoxError> {
    let config = UdpClientConfig {
        attempt_timeout: options.timeout,
        ..UdpClientConfig::DEFAULT
    };
    let storage = leak(UdpClientStorage::<4, UDP_BYTES>::new());
    let mut client = UdpEchoClient::new(config, LOCAL_PORT, storage, &mut host.sockets)?;
    for run in 0..options.count {
        client.send(host.clock.now(), &mut host.sockets, remote, message)?;
        let outcome = host.drive(|h| {
            client.service(h.clock.now(), &mut h.sockets);
            Step::from(client.outcome(), client.poll_at())
        })?;
        match outcome {
            Some(UdpOutcome::Echoed { rtt, attempt }) => {
                println!("Received: {}", String::from_utf8_lossy(message));
                println!("  round trip {} us (attempt {attempt})", rtt.total_micros());
            }
            Some(other) => {
                eprintln!("tap_client: exchange {} failed: {other:?}", run + 1);
                return Ok(false);
            }
            None => return Ok(false),
        }
    }
    Ok(true)
}
