//! The examples' command lines: a small hand-written parser (`--flag VALUE` or
//! `--flag=VALUE`, repeatable flags, positional arguments) and the options of each example.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use smolecho::Overflow;
use smolecho::smoltcp::time::Duration;
use smolecho::smoltcp::wire::{IpAddress, IpCidr};

/// Pool sizes `--slots` offers: the server is compiled for each, and picks one at run time.
pub const SLOT_CHOICES: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// smoltcp's limit on addresses per interface (`IFACE_MAX_ADDR_COUNT`, 2 by default).
pub const MAX_ADDRESSES: usize = 2;

/// A command line that cannot be used; the examples print it with the usage and exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// `--help` was asked for.
    Help,
    /// Anything wrong, as a sentence.
    Bad(String),
}

/// Parse the command line with `parse`; on `--help` print `usage` and exit 0, on a bad
/// option print the reason and `usage` and exit 2 (the `Err` holds the exit code).
pub fn parse_or_exit<T>(
    program: &str,
    usage: &str,
    parse: impl FnOnce(Vec<String>) -> Result<T, CliError>,
) -> Result<T, std::process::ExitCode> {
    match parse(std::env::args().skip(1).collect()) {
        Ok(options) => Ok(options),
        Err(CliError::Help) => {
            print!("{usage}");
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(CliError::Bad(why)) => {
            eprintln!("{program}: {why}\n\n{usage}");
            Err(std::process::ExitCode::from(2))
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help => f.write_str("help requested"),
            CliError::Bad(why) => f.write_str(why),
        }
    }
}

fn bad(why: impl Into<String>) -> CliError {
    CliError::Bad(why.into())
}

/// One item of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// `--name` (its value, if written `--name=value`).
    Flag(String, Option<String>),
    /// Anything not starting with `-`.
    Positional(String),
}

/// A cursor over the arguments.
struct Cursor {
    args: std::vec::IntoIter<String>,
}

impl Cursor {
    fn new(args: Vec<String>) -> Self {
        Self {
            args: args.into_iter(),
        }
    }

    fn next(&mut self) -> Option<Item> {
        let arg = self.args.next()?;
        if arg == "-h" || arg == "--help" {
            return Some(Item::Flag("--help".into(), None));
        }
        if arg.starts_with("--") {
            return Some(match arg.split_once('=') {
                Some((name, value)) => Item::Flag(name.into(), Some(value.into())),
                None => Item::Flag(arg, None),
            });
        }
        Some(Item::Positional(arg))
    }

    /// The value of `flag`: inline (`--flag=v`) or the next argument.
    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, CliError> {
        inline
            .or_else(|| self.args.next())
            .ok_or_else(|| bad(format!("{flag} needs a value")))
    }
}

fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, CliError> {
    value
        .parse()
        .map_err(|_| bad(format!("{flag}: {value:?} is not a valid number")))
}

fn parse_port(flag: &str, value: &str) -> Result<u16, CliError> {
    match parse_num::<u16>(flag, value)? {
        0 => Err(bad(format!("{flag}: port 0 cannot be used"))),
        port => Ok(port),
    }
}

/// `ADDR/PREFIX`, IPv4 or IPv6.
pub fn parse_cidr(flag: &str, value: &str) -> Result<IpCidr, CliError> {
    let (addr, prefix) = value.split_once('/').ok_or_else(|| {
        bad(format!(
            "{flag}: {value:?} needs a prefix length, like 192.168.69.1/24"
        ))
    })?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| bad(format!("{flag}: {addr:?} is not an IP address")))?;
    let prefix: u8 = parse_num(flag, prefix)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad(format!(
            "{flag}: prefix /{prefix} is longer than {max}"
        )));
    }
    Ok(IpCidr::new(IpAddress::from(addr), prefix))
}

fn parse_addr(flag: &str, value: &str) -> Result<IpAddress, CliError> {
    value
        .parse::<IpAddr>()
        .map(IpAddress::from)
        .map_err(|_| bad(format!("{flag}: {value:?} is not an IP address")))
}

fn parse_secs(flag: &str, value: &str) -> Result<Option<Duration>, CliError> {
    let secs: u64 = parse_num(flag, value)?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

fn parse_percent(flag: &str, value: &str) -> Result<u8, CliError> {
    match parse_num::<u8>(flag, value)? {
        pct @ 0..=100 => Ok(pct),
        _ => Err(bad(format!("{flag}: a percentage is 0 to 100"))),
    }
}

fn parse_tap_name(value: &str) -> Result<String, CliError> {
    let ok = !value.is_empty()
        && value.len() < 16
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(value.to_string())
    } else {
        Err(bad(format!(
            "--tap: {value:?} is not an interface name (1 to 15 letters, digits, '-', '_', '.')"
        )))
    }
}

/// Collect repeatable CIDR flags, starting over the defaults on first use.
fn push_cidr(
    list: &mut Vec<IpCidr>,
    given: &mut bool,
    flag: &str,
    value: &str,
) -> Result<(), CliError> {
    if !*given {
        list.clear();
        *given = true;
    }
    list.push(parse_cidr(flag, value)?);
    Ok(())
}

fn check_addresses(ips: &[IpCidr]) -> Result<(), CliError> {
    if ips.len() > MAX_ADDRESSES {
        return Err(bad(format!(
            "--ip: at most {MAX_ADDRESSES} addresses per interface (smoltcp's IFACE_MAX_ADDR_COUNT)"
        )));
    }
    Ok(())
}

fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> IpCidr {
    IpCidr::new(IpAddress::v4(a, b, c, d), prefix)
}

fn fdaa(last: u16) -> IpCidr {
    IpCidr::new(IpAddress::v6(0xfdaa, 0, 0, 0, 0, 0, 0, last), 64)
}

/// The Linux side of the TAP when an example creates it: 192.168.69.100/24, fdaa::100/64.
pub fn default_host_ips() -> Vec<IpCidr> {
    vec![v4(192, 168, 69, 100, 24), fdaa(0x100)]
}

/// Options of `tap_server`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerOptions {
    /// TAP device name.
    pub tap: String,
    /// The server's addresses.
    pub ips: Vec<IpCidr>,
    /// Default gateways (one per IP version at most).
    pub gateways: Vec<IpAddress>,
    /// TCP echo port.
    pub port: u16,
    /// UDP echo port.
    pub udp_port: u16,
    /// TCP connection slots, one of [`SLOT_CHOICES`].
    pub slots: usize,
    /// What to do with a SYN when every slot is busy.
    pub overflow: Overflow,
    /// Idle timeout (`None`: off).
    pub idle_timeout: Option<Duration>,
    /// Write a packet capture here.
    pub pcap: Option<PathBuf>,
    /// Percentage of frames to drop, both directions.
    pub drop_chance: u8,
    /// Percentage of frames to corrupt, both directions.
    pub corrupt_chance: u8,
    /// Print a counter summary this often.
    pub stats: Option<Duration>,
    /// The Linux side's addresses, when the server creates the TAP.
    pub host_ips: Vec<IpCidr>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            tap: "tap0".into(),
            ips: vec![v4(192, 168, 69, 1, 24), fdaa(1)],
            gateways: Vec::new(),
            port: 8000,
            udp_port: 8000,
            slots: 8,
            overflow: Overflow::Defer,
            idle_timeout: Some(Duration::from_secs(60)),
            pcap: None,
            drop_chance: 0,
            corrupt_chance: 0,
            stats: None,
            host_ips: default_host_ips(),
        }
    }
}

/// Usage of `tap_server`.
pub const SERVER_USAGE: &str = "\
usage: tap_server [options]

Serves TCP and UDP echo (RFC 862) with smoltcp on a Linux TAP device.

  --tap NAME            TAP device (default tap0)
  --ip CIDR             server address, repeatable (default 192.168.69.1/24 and fdaa::1/64)
  --gateway ADDR        default gateway, repeatable (one IPv4, one IPv6)
  --port N              TCP port (default 8000)
  --udp-port N          UDP port (default: the TCP port)
  --slots N             TCP connection slots: 1, 2, 4, 8, 16, 32 or 64 (default 8)
  --overflow MODE       when every slot is busy: defer (hold SYNs, default) or refuse (RST)
  --idle-timeout SECS   drop connections idle this long, 0 = never (default 60)
  --pcap FILE           write every frame to a pcap file (tshark -r FILE)
  --drop-chance PCT     drop this percentage of frames (smoltcp FaultInjector)
  --corrupt-chance PCT  corrupt this percentage of frames (smoltcp FaultInjector)
  --stats SECS          print the counters every SECS seconds
  --host-ip CIDR        Linux side's address when the TAP is created here, repeatable
                        (default 192.168.69.100/24 and fdaa::100/64)
  -h, --help            this text
";

impl ServerOptions {
    /// Parse the arguments after the program name.
    pub fn parse(args: Vec<String>) -> Result<Self, CliError> {
        let mut o = Self::default();
        let (mut ips_given, mut host_given, mut udp_given) = (false, false, false);
        let mut cur = Cursor::new(args);
        while let Some(item) = cur.next() {
            let (flag, inline) = match item {
                Item::Flag(flag, inline) => (flag, inline),
                Item::Positional(p) => return Err(bad(format!("unexpected argument {p:?}"))),
            };
            if flag == "--help" {
                return Err(CliError::Help);
            }
            let v = cur.value(&flag, inline)?;
            match flag.as_str() {
                "--tap" => o.tap = parse_tap_name(&v)?,
                "--ip" => push_cidr(&mut o.ips, &mut ips_given, &flag, &v)?,
                "--host-ip" => push_cidr(&mut o.host_ips, &mut host_given, &flag, &v)?,
                "--gateway" => o.gateways.push(parse_addr(&flag, &v)?),
                "--port" => o.port = parse_port(&flag, &v)?,
                "--udp-port" => {
                    o.udp_port = parse_port(&flag, &v)?;
                    udp_given = true;
                }
                "--slots" => {
                    let n: usize = parse_num(&flag, &v)?;
                    if !SLOT_CHOICES.contains(&n) {
                        return Err(bad(format!("--slots: choose one of {SLOT_CHOICES:?}")));
                    }
                    o.slots = n;
                }
                "--overflow" => {
                    o.overflow = match v.as_str() {
                        "defer" => Overflow::Defer,
                        "refuse" => Overflow::Refuse,
                        _ => return Err(bad("--overflow: defer or refuse")),
                    }
                }
                "--idle-timeout" => o.idle_timeout = parse_secs(&flag, &v)?,
                "--pcap" => o.pcap = Some(PathBuf::from(v)),
                "--drop-chance" => o.drop_chance = parse_percent(&flag, &v)?,
                "--corrupt-chance" => o.corrupt_chance = parse_percent(&flag, &v)?,
                "--stats" => o.stats = parse_secs(&flag, &v)?,
                _ => return Err(bad(format!("unknown option {flag}"))),
            }
        }
        if !udp_given {
            o.udp_port = o.port;
        }
        if o.ips.is_empty() {
            return Err(bad("--ip: at least one address is needed"));
        }
        check_addresses(&o.ips)?;
        check_gateways(&o.gateways)?;
        Ok(o)
    }
}

fn check_gateways(gateways: &[IpAddress]) -> Result<(), CliError> {
    let v4 = gateways
        .iter()
        .filter(|g| matches!(g, IpAddress::Ipv4(_)))
        .count();
    if v4 > 1 || gateways.len() - v4 > 1 {
        return Err(bad("--gateway: one IPv4 and one IPv6 gateway at most"));
    }
    Ok(())
}

/// Options of `tap_client`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// The echo server's address.
    pub host: IpAddress,
    /// Its port.
    pub port: u16,
    /// TAP device name.
    pub tap: String,
    /// The client's addresses.
    pub ips: Vec<IpCidr>,
    /// Default gateways.
    pub gateways: Vec<IpAddress>,
    /// UDP instead of TCP.
    pub udp: bool,
    /// What to send.
    pub message: String,
    /// How many exchanges.
    pub count: u32,
    /// Give up on one exchange after this long.
    pub timeout: Duration,
    /// The Linux side's addresses, when the client creates the TAP.
    pub host_ips: Vec<IpCidr>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            host: IpAddress::v4(192, 168, 69, 100),
            port: 8000,
            tap: "tap0".into(),
            ips: vec![v4(192, 168, 69, 2, 24), fdaa(2)],
            gateways: Vec::new(),
            udp: false,
            message: "Hello, echo server!".into(),
            count: 1,
            timeout: Duration::from_secs(10),
            host_ips: default_host_ips(),
        }
    }
}

/// Usage of `tap_client`.
pub const CLIENT_USAGE: &str = "\
usage: tap_client [HOST] [PORT] [options]

An echo client (like the seed's echo-client.py and udpc.py) running on smoltcp over a Linux
TAP device. Exits 0 only when every echo matches.

  HOST                  echo server (default 192.168.69.100, the Linux side of the TAP)
  PORT                  its port (default 8000)
  --tap NAME            TAP device (default tap0)
  --ip CIDR             client address, repeatable (default 192.168.69.2/24 and fdaa::2/64)
  --gateway ADDR        default gateway, repeatable (one IPv4, one IPv6)
  --udp                 UDP instead of TCP
  --message TEXT        what to send (default \"Hello, echo server!\")
  --count N             exchanges, each on a new connection (default 1)
  --timeout SECS        give up on one exchange after SECS (default 10)
  --host-ip CIDR        Linux side's address when the TAP is created here, repeatable
  -h, --help            this text
";

impl ClientOptions {
    /// Parse the arguments after the program name.
    pub fn parse(args: Vec<String>) -> Result<Self, CliError> {
        let mut o = Self::default();
        let (mut ips_given, mut host_given) = (false, false);
        let mut positional = 0;
        let mut cur = Cursor::new(args);
        while let Some(item) = cur.next() {
            let (flag, inline) = match item {
                Item::Positional(p) => {
                    match positional {
                        0 => o.host = parse_addr("HOST", &p)?,
                        1 => o.port = parse_port("PORT", &p)?,
                        _ => return Err(bad(format!("unexpected argument {p:?}"))),
                    }
                    positional += 1;
                    continue;
                }
                Item::Flag(flag, inline) => (flag, inline),
            };
            match flag.as_str() {
                "--help" => return Err(CliError::Help),
                "--udp" => {
                    o.udp = true;
                    continue;
                }
                _ => {}
            }
            let v = cur.value(&flag, inline)?;
            match flag.as_str() {
                "--tap" => o.tap = parse_tap_name(&v)?,
                "--ip" => push_cidr(&mut o.ips, &mut ips_given, &flag, &v)?,
                "--host-ip" => push_cidr(&mut o.host_ips, &mut host_given, &flag, &v)?,
                "--gateway" => o.gateways.push(parse_addr(&flag, &v)?),
                "--message" => o.message = v,
                "--count" => {
                    o.count = parse_num(&flag, &v)?;
                    if o.count == 0 {
                        return Err(bad("--count: at least 1"));
                    }
                }
                "--timeout" => {
                    o.timeout =
                        parse_secs(&flag, &v)?.ok_or_else(|| bad("--timeout: at least 1"))?
                }
                _ => return Err(bad(format!("unknown option {flag}"))),
            }
        }
        if o.message.is_empty() {
            return Err(bad("--message: an empty message cannot be echoed"));
        }
        if o.ips.is_empty() {
            return Err(bad("--ip: at least one address is needed"));
        }
        check_addresses(&o.ips)?;
        check_gateways(&o.gateways)?;
        Ok(o)
    }
}
