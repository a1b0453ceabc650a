//! The examples' command lines, declared for clap (derive API).
//!
//! clap prints `--help` with every default, names the option or value at fault in a usage
//! error and exits 2 for it; the examples exit 1 only for run-time failures. What clap
//! cannot say in a declaration (how many addresses smoltcp holds, one gateway per IP
//! version) is checked by [`parse_checked`], which reports it the same way.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::{NonEmptyStringValueParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Parser, ValueEnum};
use smolecho::Overflow;
use smolecho::smoltcp::time::Duration;
use smolecho::smoltcp::wire::{IpAddress, IpCidr};

/// The largest pool `--slots` builds.
pub const MAX_SLOTS: usize = 1024;

/// `--buffer-size` bounds, bytes. Below 4 KiB a slot's window holds less than three
/// full-size segments; smoltcp refuses buffers above 1 GiB (its window scale stops at 14).
pub const MIN_BUFFER: usize = 4 << 10;
pub const MAX_BUFFER: usize = 64 << 20;
/// The largest pool `--slots` and `--buffer-size` may build together (slots x 2 x size):
/// the pool is allocated zeroed at start-up, so only touched pages cost memory, but the
/// kernel must still agree to reserve it.
pub const MAX_POOL: usize = 8 << 30;
/// The default `--buffer-size`: 128 KiB lets the host's TCP keep a large window in flight
/// (smoltcp scales the window); with `--offload` segments carry up to 64 KB each way, so
/// 128 KiB would hold only two of them in flight.
pub const DEFAULT_BUFFER: usize = 128 << 10;
pub const DEFAULT_OFFLOAD_BUFFER: usize = 512 << 10;

/// smoltcp's limit on addresses per interface (`IFACE_MAX_ADDR_COUNT`, 2 by default).
pub const MAX_ADDRESSES: usize = 2;

/// Parse the command line, then `check` what the declarations cannot. `--help` exits 0; a
/// usage error prints clap's message and exits 2.
pub fn parse_checked<T: Parser>(check: fn(&T) -> Result<(), String>) -> T {
    let options = T::parse();
    if let Err(why) = check(&options) {
        T::command().error(ErrorKind::ValueValidation, why).exit();
    }
    options
}

/// TCP and UDP echo (RFC 862) with smoltcp on a Linux TAP device.
#[derive(Debug, Clone, Parser)]
#[command(name = "tap_server", version)]
pub struct ServerOptions {
    /// TAP device
    #[arg(long, value_name = "NAME", default_value = "tap0", value_parser = tap_name)]
    pub tap: String,
    /// Server address, repeatable (2 at most)
    #[arg(long = "ip", value_name = "CIDR", default_values = ["192.168.69.1/24", "fdaa::1/64"],
          value_parser = cidr)]
    pub ips: Vec<IpCidr>,
    /// Default gateway, repeatable (one IPv4, one IPv6)
    #[arg(long = "gateway", value_name = "ADDR", value_parser = address)]
    pub gateways: Vec<IpAddress>,
    /// TCP echo port
    #[arg(long, value_name = "N", default_value_t = 8000, value_parser = port())]
    pub port: u16,
    /// UDP echo port [default: the TCP port]
    #[arg(long = "udp-port", value_name = "N", value_parser = port())]
    udp_port: Option<u16>,
    /// TCP connection slots, 1 to 1024
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = slot_count)]
    pub slots: usize,
    /// Receive and transmit buffer of each TCP slot, 4K to 64M (bytes, or with a K or M
    /// suffix); the pool takes slots x 2 x SIZE (zeroed pages: only what traffic touches is
    /// resident). Larger buffers keep more in flight, and more to resend after a loss
    /// [default: 128K, 512K with --offload]
    #[arg(long = "buffer-size", value_name = "SIZE", value_parser = buffer_size)]
    buffer_size: Option<usize>,
    /// When every slot is busy: hold SYNs back (the client retries) or answer RST
    #[arg(long, value_name = "MODE", value_enum, default_value_t = OverflowMode::Defer)]
    pub overflow: OverflowMode,
    /// Drop connections idle this long, 0 = never
    #[arg(long = "idle-timeout", value_name = "SECS", default_value = "60",
          value_parser = period())]
    pub idle_timeout: Period,
    /// Write every frame to a pcap file (tshark -r FILE)
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Drop this percentage of frames (smoltcp FaultInjector; with --offload the device's own)
    #[arg(long = "drop-chance", value_name = "PCT", default_value_t = 0, value_parser = percent())]
    pub drop_chance: u8,
    /// Corrupt this percentage of frames (smoltcp FaultInjector; with --offload the device's
    /// own, on the wire side of the checksums)
    #[arg(long = "corrupt-chance", value_name = "PCT", default_value_t = 0,
          value_parser = percent())]
    pub corrupt_chance: u8,
    /// Print the counters every SECS seconds, 0 = never
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = period())]
    pub stats: Period,
    /// Linux side's address when the TAP is created here, repeatable
    #[arg(long = "host-ip", value_name = "CIDR", default_values = HOST_IPS, value_parser = cidr)]
    pub host_ips: Vec<IpCidr>,
    /// Open the TAP with virtio-net headers and the kernel's checksum and TCP segmentation
    /// offloads (faster bulk echo) instead of plain tun-tap
    #[arg(long)]
    pub offload: bool,
}

impl ServerOptions {
    /// The UDP echo port.
    pub fn udp_port(&self) -> u16 {
        self.udp_port.unwrap_or(self.port)
    }

    /// Bytes of each slot's receive buffer, and of its transmit buffer.
    pub fn buffer_size(&self) -> usize {
        match (self.buffer_size, self.offload) {
            (Some(size), _) => size,
            (None, false) => DEFAULT_BUFFER,
            (None, true) => DEFAULT_OFFLOAD_BUFFER,
        }
    }

    /// What the declarations cannot check.
    pub fn check(&self) -> Result<(), String> {
        check_addresses(&self.ips)?;
        check_gateways(&self.gateways)?;
        let pool = self
            .slots
            .saturating_mul(2)
            .saturating_mul(self.buffer_size());
        if pool > MAX_POOL {
            return Err(format!(
                "--slots {} with --buffer-size {} would take {} MiB; at most {} MiB",
                self.slots,
                self.buffer_size(),
                pool >> 20,
                MAX_POOL >> 20
            ));
        }
        Ok(())
    }
}

/// An echo client (like the seed's echo-client.py and udpc.py) on smoltcp over a Linux TAP
/// device; exits 0 only when every echo matches.
#[derive(Debug, Clone, Parser)]
#[command(name = "tap_client", version)]
pub struct ClientOptions {
    /// Echo server (the Linux side of the TAP by default)
    #[arg(value_name = "HOST", default_value = "192.168.69.100", value_parser = address)]
    pub host: IpAddress,
    /// Its port
    #[arg(value_name = "PORT", default_value_t = 8000, value_parser = port())]
    pub port: u16,
    /// TAP device
    #[arg(long, value_name = "NAME", default_value = "tap0", value_parser = tap_name)]
    pub tap: String,
    /// Client address, repeatable (2 at most)
    #[arg(long = "ip", value_name = "CIDR", default_values = ["192.168.69.2/24", "fdaa::2/64"],
          value_parser = cidr)]
    pub ips: Vec<IpCidr>,
    /// Default gateway, repeatable (one IPv4, one IPv6)
    #[arg(long = "gateway", value_name = "ADDR", value_parser = address)]
    pub gateways: Vec<IpAddress>,
    /// UDP instead of TCP
    #[arg(long)]
    pub udp: bool,
    /// What to send
    #[arg(long, value_name = "TEXT", default_value = "Hello, echo server!",
          value_parser = NonEmptyStringValueParser::new())]
    pub message: String,
    /// Exchanges, each on a new connection
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Give up on one exchange after SECS
    #[arg(long, value_name = "SECS", default_value = "10",
          value_parser = clap::value_parser!(u64).range(1..).map(Duration::from_secs))]
    pub timeout: Duration,
    /// Linux side's address when the TAP is created here, repeatable
    #[arg(long = "host-ip", value_name = "CIDR", default_values = HOST_IPS, value_parser = cidr)]
    pub host_ips: Vec<IpCidr>,
    /// Open the TAP with virtio-net headers and the kernel's offloads instead of plain tun-tap
    #[arg(long)]
    pub offload: bool,
}

impl ClientOptions {
    /// What the declarations cannot check.
    pub fn check(&self) -> Result<(), String> {
        check_addresses(&self.ips)?;
        check_gateways(&self.gateways)
    }
}

/// The Linux side of the TAP when an example creates it.
const HOST_IPS: [&str; 2] = ["192.168.69.100/24", "fdaa::100/64"];

/// `--overflow`: what the server does with a SYN when every slot is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverflowMode {
    // Plain comments: doc comments here would switch `--help` to clap's long layout.
    // Hold SYNs back; the client retries and is served when a slot frees.
    Defer,
    // Answer RST ("connection refused").
    Refuse,
}

impl From<OverflowMode> for Overflow {
    fn from(mode: OverflowMode) -> Self {
        match mode {
            OverflowMode::Defer => Overflow::Defer,
            OverflowMode::Refuse => Overflow::Refuse,
        }
    }
}

/// A period in whole seconds where 0 means never (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(pub Option<Duration>);

fn period() -> impl TypedValueParser<Value = Period> {
    clap::value_parser!(u64).map(|secs| Period((secs > 0).then(|| Duration::from_secs(secs))))
}

fn port() -> impl TypedValueParser<Value = u16> {
    clap::value_parser!(u16).range(1..)
}

fn percent() -> impl TypedValueParser<Value = u8> {
    clap::value_parser!(u8).range(0..=100)
}

fn address(value: &str) -> Result<IpAddress, String> {
    value
        .parse::<IpAddr>()
        .map(IpAddress::from)
        .map_err(|e| e.to_string())
}

fn slot_count(value: &str) -> Result<usize, String> {
    match value.parse() {
        Ok(n) if (1..=MAX_SLOTS).contains(&n) => Ok(n),
        _ => Err(format!("a number from 1 to {MAX_SLOTS}")),
    }
}

/// A size in bytes, or in KiB or MiB with a `K` or `M` suffix (`KiB`, `MiB` too).
fn buffer_size(value: &str) -> Result<usize, String> {
    let range = || format!("{}K to {}M", MIN_BUFFER >> 10, MAX_BUFFER >> 20);
    let lower = value.to_ascii_lowercase();
    let (digits, unit) = if let Some(d) = lower.strip_suffix("kib").or(lower.strip_suffix('k')) {
        (d, 1 << 10)
    } else if let Some(d) = lower.strip_suffix("mib").or(lower.strip_suffix('m')) {
        (d, 1 << 20)
    } else {
        (lower.as_str(), 1)
    };
    let size = digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("a size like 512K or 1M, {}", range()))?;
    if (MIN_BUFFER..=MAX_BUFFER).contains(&size) {
        Ok(size)
    } else {
        Err(range())
    }
}

/// `ADDR/PREFIX`, IPv4 or IPv6.
fn cidr(value: &str) -> Result<IpCidr, String> {
    let (addr, prefix) = value
        .split_once('/')
        .ok_or("needs a prefix length, like 192.168.69.1/24")?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(prefix) if prefix <= max => Ok(IpCidr::new(IpAddress::from(addr), prefix)),
        _ => Err(format!("the prefix length is 0 to {max}")),
    }
}

/// A name Linux accepts for an interface.
fn tap_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() < 16
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(value.to_string())
    } else {
        Err("an interface name is 1 to 15 letters, digits, '-', '_', '.'".into())
    }
}

fn check_addresses(ips: &[IpCidr]) -> Result<(), String> {
    if ips.len() > MAX_ADDRESSES {
        return Err(format!(
            "--ip: at most {MAX_ADDRESSES} addresses per interface (smoltcp's IFACE_MAX_ADDR_COUNT)"
        ));
    }
    Ok(())
}

fn check_gateways(gateways: &[IpAddress]) -> Result<(), String> {
    let v4 = gateways
        .iter()
        .filter(|g| matches!(g, IpAddress::Ipv4(_)))
        .count();
    if v4 > 1 || gateways.len() - v4 > 1 {
        return Err("--gateway: one IPv4 and one IPv6 gateway at most".into());
    }
    Ok(())
}
