//! Raw Ethernet frames onto a TAP from its Linux side, for `tests/tap_robustness.rs`: an
//! `AF_PACKET` socket bound to the TAP (what it sends goes to the process that holds the TAP,
//! `tap_server`), a pacer that bounds the rate, spoofed SYNs for the flood, and a generator
//! of malformed frames.
//!
//! Only ever used inside a case's own network namespace, on the TAP created there.
//!
//! Well-formed frames come from the crate's one set of builders, `smolecho::sim::frames`. The
//! malformed ones start from such a frame and are broken byte by byte here, with this file's
//! own checksum (RFC 1071) to make a lie consistent where it should be; a unit test checks the
//! builders' checksums against that sum, so a bug in smoltcp's emitters cannot hide behind the
//! same bug in its parser.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use smolecho::sim::frames::{self, Peer};
use smolecho::smoltcp::wire::{
    EthernetAddress, IpAddress, IpProtocol, TcpControl, TcpRepr, TcpSeqNumber,
};

/// The server's MAC address (`MAC` in `examples/tap_server.rs`).
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const BROADCAST: [u8; 6] = [0xff; 6];
const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
/// The Ethernet header's length: the IP header starts there.
const ETH: usize = 14;
/// Largest frame the TAP takes (MTU 1500 + Ethernet header).
const MAX_FRAME: usize = 1514;

/// TCP flags, for the combinations smoltcp's `TcpControl` cannot express.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;

/// An `AF_PACKET` socket that sends whole Ethernet frames out of one interface.
pub struct RawLink {
    fd: OwnedFd,
    /// Frames the kernel refused (its queue towards the TAP reader was full), after retries.
    pub refused: u64,
}

impl RawLink {
    /// Open it on `ifname` (which must exist in this namespace).
    pub fn open(ifname: &str) -> io::Result<Self> {
        let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: `name` is a valid NUL-terminated string for the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: this socket receives nothing, it only sends.
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index as i32;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, refused: 0 })
    }

    /// Send one frame. A full queue (`ENOBUFS`) is retried a few times, then counted in
    /// `refused`; any other error is returned.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        for _ in 0..20 {
            // SAFETY: `frame` is valid for `frame.len()` bytes; the socket is bound, so no
            // address is needed.
            let rc = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast::<libc::c_void>(),
                    frame.len(),
                    0,
                )
            };
            if rc >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ENOBUFS) {
                return Err(err);
            }
            thread::sleep(Duration::from_micros(200));
        }
        self.refused += 1;
        Ok(())
    }
}

/// Keeps a sender at or below `per_sec` frames per second (it sleeps when ahead).
pub struct Pacer {
    start: Instant,
    per_sec: u64,
    sent: u64,
}

impl Pacer {
    pub fn new(per_sec: u64) -> Self {
        Self {
            start: Instant::now(),
            per_sec,
            sent: 0,
        }
    }

    /// Call before each frame.
    pub fn tick(&mut self) {
        let due = self.start + Duration::from_micros(self.sent * 1_000_000 / self.per_sec);
        if let Some(ahead) = due.checked_duration_since(Instant::now())
            && ahead > Duration::from_micros(500)
        {
            thread::sleep(ahead);
        }
        self.sent += 1;
    }
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }

    pub fn u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// Well-formed frames
// ---------------------------------------------------------------------------------------------

/// An IP address from its text.
pub fn ip(s: &str) -> IpAddress {
    s.parse::<IpAddr>().expect("an IP address").into()
}

/// A host for `frames`: its MAC, address and port.
pub fn peer(mac: [u8; 6], addr: impl Into<IpAddress>, port: u16) -> Peer {
    Peer {
        mac: EthernetAddress(mac),
        addr: addr.into(),
        port,
    }
}

/// Initial SYN `n` of the flood: from one of 1,000 spoofed addresses (500 IPv4 in
/// 10.69.4.0-10.69.5.243, 500 IPv6 fdaa::5:0-fdaa::5:1f3; inside the server's /16 and /64, so
/// it asks for them by ARP or neighbour solicitation, which nobody answers), each with its
/// own MAC, to the server's `port`.
pub fn spoofed_syn(n: u32, server_v4: Ipv4Addr, server_v6: Ipv6Addr, port: u16) -> Vec<u8> {
    let host = n % 1000;
    let h = host / 2;
    let (src, dst): (IpAddress, IpAddress) = if host.is_multiple_of(2) {
        let src = Ipv4Addr::new(10, 69, 4 + (h / 250) as u8, (h % 250) as u8 + 1);
        (src.into(), server_v4.into())
    } else {
        (
            Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 5, h as u16).into(),
            server_v6.into(),
        )
    };
    let mac = [0x02, 0x66, 0, 0, (host >> 8) as u8, host as u8];
    let (from, to) = (
        peer(mac, src, 1024 + (n % 60000) as u16),
        peer(SERVER_MAC, dst, port),
    );
    // MSS 1460, SACK permitted, window scale 7: what a kernel sends.
    let repr = TcpRepr {
        src_port: from.port,
        dst_port: to.port,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(n.wrapping_mul(2_654_435_761) as i32),
        ack_number: None,
        window_len: 64240,
        window_scale: Some(7),
        max_seg_size: Some(1460),
        sack_permitted: true,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    frames::tcp_repr(&from, &to, &repr).to_vec()
}

/// A well-formed ARP request from `sender` (MAC `mac`) for `target`, broadcast.
pub fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = ethernet(BROADCAST, mac, ETH_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

// ---------------------------------------------------------------------------------------------
// Breaking a frame byte by byte
// ---------------------------------------------------------------------------------------------

/// The Internet checksum of `parts`, concatenated (RFC 1071).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u64;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u64::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet header, for what `frames` does not build (ARP, runts).
fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(MAX_FRAME);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn is_ipv6(f: &[u8]) -> bool {
    f[12..14] == ETH_IPV6.to_be_bytes()
}

/// Where the transport header of a frame from `frames` starts (its IPv4 header has no
/// options).
fn transport_at(f: &[u8]) -> usize {
    if is_ipv6(f) { ETH + 40 } else { ETH + 20 }
}

/// Recompute the IPv4 header checksum of `f` (header length from its IHL, within the frame).
fn fix_ipv4_checksum(f: &mut [u8]) {
    let ihl = usize::from(f[ETH] & 0x0f) * 4;
    let end = (ETH + ihl).min(f.len());
    if end < ETH + 12 {
        return;
    }
    f[24..26].fill(0);
    let c = checksum(&[&f[ETH..end]]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// After bytes were added or cut past the IP header: the IP length from the frame's length
/// (and the IPv4 header checksum).
fn fix_ip_length(f: &mut [u8]) {
    let len = f.len() - ETH;
    if is_ipv6(f) {
        f[18..20].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    } else {
        f[16..18].copy_from_slice(&(len as u16).to_be_bytes());
        fix_ipv4_checksum(f);
    }
}

/// Recompute the TCP, UDP, ICMP or ICMPv6 checksum of the transport part of `f`, which starts
/// at `at` and runs to the end of the frame (protocol and addresses from the IP header).
fn fix_checksum(f: &mut [u8], at: usize) {
    let (proto, pseudo) = if is_ipv6(f) {
        let mut p = f[22..54].to_vec();
        p.extend_from_slice(&((f.len() - at) as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, f[20]]);
        (f[20], p)
    } else {
        let mut p = f[26..34].to_vec();
        p.extend_from_slice(&[0, f[23]]);
        p.extend_from_slice(&((f.len() - at) as u16).to_be_bytes());
        (f[23], p)
    };
    let (field, pseudo) = match proto {
        PROTO_TCP => (16, &pseudo[..]),
        PROTO_UDP => (6, &pseudo[..]),
        PROTO_ICMPV6 => (2, &pseudo[..]),
        // ICMP for IPv4 has no pseudo-header.
        _ => (2, &[][..]),
    };
    f[at + field..at + field + 2].fill(0);
    let c = checksum(&[pseudo, &f[at..]]);
    // A UDP checksum of 0 means "none": send its other form.
    let c = if proto == PROTO_UDP && c == 0 {
        0xffff
    } else {
        c
    };
    f[at + field..at + field + 2].copy_from_slice(&c.to_be_bytes());
}

/// Replace the options of the TCP frame `f` with `options` (padded to whole words), with the
/// data offset, IP length and checksums to match.
fn set_tcp_options(f: &mut Vec<u8>, options: &[u8]) {
    let at = transport_at(f);
    let header = usize::from(f[at + 12] >> 4) * 4;
    let mut padded = options.to_vec();
    padded.resize(options.len().next_multiple_of(4), 0);
    let words = (20 + padded.len()) / 4;
    f.splice(at + 20..at + header, padded);
    f[at + 12] = (words as u8) << 4;
    fix_ip_length(f);
    fix_checksum(f, at);
}

/// The `TcpControl` and acknowledgement of a valid segment closest to `flags`.
fn control_of(flags: u8) -> (TcpControl, bool) {
    let control = if flags & SYN != 0 {
        TcpControl::Syn
    } else if flags & FIN != 0 {
        TcpControl::Fin
    } else if flags & RST != 0 {
        TcpControl::Rst
    } else if flags & PSH != 0 {
        TcpControl::Psh
    } else {
        TcpControl::None
    };
    (control, flags & ACK != 0)
}

// ---------------------------------------------------------------------------------------------
// Malformed frames
// ---------------------------------------------------------------------------------------------

/// One list makes the enum of junk kinds, `Kind::ALL` in that order and `Kind::name`: a kind
/// cannot be added to one and missed in another.
macro_rules! junk_kinds {
    ($($kind:ident => $name:literal,)*) => {
        /// The kinds of malformed frame [`Junk`] makes, in turn.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Kind {
            $($kind,)*
        }

        impl Kind {
            /// Every kind, in the order [`Junk`] makes them.
            pub const ALL: [Kind; [$(Kind::$kind,)*].len()] = [$(Kind::$kind,)*];

            pub const fn name(self) -> &'static str {
                match self {
                    $(Kind::$kind => $name,)*
                }
            }
        }
    };
}

junk_kinds! {
    RandomBytes => "random bytes",
    Ethernet => "Ethernet runts, VLAN tags, unknown types",
    Ipv4VersionIhl => "IPv4 bad version or header length",
    Ipv4TotalLength => "IPv4 bad total length",
    Ipv4Checksum => "IPv4 bad header checksum",
    Ipv4Options => "IPv4 garbage options",
    Ipv4Fragments => "IPv4 fragments",
    Ipv6Header => "IPv6 bad header, lengths, next header",
    Ipv6Extensions => "IPv6 garbage extension headers",
    TcpFlags => "TCP impossible flag combinations",
    TcpOffset => "TCP bad data offset",
    TcpOptions => "TCP garbage options",
    TcpChecksum => "TCP bad checksum",
    UdpLengths => "UDP bad lengths and checksums",
    Icmp => "ICMP and ICMPv6/NDP junk",
    Arp => "ARP junk",
}

impl Kind {
    /// Its place in [`Kind::ALL`] (the declaration order), for per-kind counts.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Makes malformed frames for a server at `server_v4`/`server_v6` with the Linux side at
/// `host_v4`/`host_v6`. No frame claims a host address as its source, so none can poison the
/// server's neighbour cache for the real clients, nor hit their connections.
pub struct Junk {
    rng: Rng,
    server_v4: Ipv4Addr,
    server_v6: Ipv6Addr,
    host_v4: Ipv4Addr,
    host_v6: Ipv6Addr,
    port: u16,
    n: usize,
}

impl Junk {
    pub fn new(seed: u64, server: (&str, &str), host: (&str, &str), port: u16) -> Self {
        let v4 = |s: &str| s.parse::<Ipv4Addr>().expect("an IPv4 address");
        let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("an IPv6 address");
        Self {
            rng: Rng(seed | 1),
            server_v4: v4(server.0),
            server_v6: v6(server.1),
            host_v4: v4(host.0),
            host_v6: v6(host.1),
            port,
            n: 0,
        }
    }

    /// The next frame and its kind.
    pub fn next_frame(&mut self) -> (Kind, Vec<u8>) {
        let kind = Kind::ALL[self.n % Kind::ALL.len()];
        self.n += 1;
        let mut f = match kind {
            Kind::RandomBytes => self.random_bytes(),
            Kind::Ethernet => self.ethernet_junk(),
            Kind::Ipv4VersionIhl => self.ipv4_version_ihl(),
            Kind::Ipv4TotalLength => self.ipv4_total_len(),
            Kind::Ipv4Checksum => self.ipv4_bad_checksum(),
            Kind::Ipv4Options => self.ipv4_options(),
            Kind::Ipv4Fragments => self.ipv4_fragment(),
            Kind::Ipv6Header => self.ipv6_header_junk(),
            Kind::Ipv6Extensions => self.ipv6_extension_junk(),
            Kind::TcpFlags => self.tcp_flags(),
            Kind::TcpOffset => self.tcp_offset(),
            Kind::TcpOptions => self.tcp_options(),
            Kind::TcpChecksum => self.tcp_bad_checksum(),
            Kind::UdpLengths => self.udp_lengths(),
            Kind::Icmp => self.icmp_junk(),
            Kind::Arp => self.arp_junk(),
        };
        f.truncate(MAX_FRAME);
        (kind, f)
    }

    /// Mostly the server's MAC (so the frame gets past the Ethernet filter), sometimes
    /// broadcast, IPv6 multicast or someone else's.
    fn dst_mac(&mut self) -> [u8; 6] {
        match self.rng.below(10) {
            0 => BROADCAST,
            1 => [0x33, 0x33, 0xff, 0, 0, 1],
            2 => {
                let mut m = [0u8; 6];
                m.iter_mut().for_each(|b| *b = self.rng.byte());
                m
            }
            _ => SERVER_MAC,
        }
    }

    /// A random locally administered unicast MAC that is not the server's.
    fn src_mac(&mut self) -> [u8; 6] {
        [
            0x06,
            0x77,
            self.rng.byte(),
            self.rng.byte(),
            self.rng.byte(),
            self.rng.byte(),
        ]
    }

    /// A spoofed IPv4 source in the server's /24, never the server's or the host's; now
    /// and then an address no host may use (broadcast, multicast, loopback, the server's).
    fn spoof_v4(&mut self) -> Ipv4Addr {
        match self.rng.below(20) {
            0 => Ipv4Addr::BROADCAST,
            1 => Ipv4Addr::new(224, 0, 0, 1),
            2 => Ipv4Addr::LOCALHOST,
            3 => Ipv4Addr::UNSPECIFIED,
            4 => self.server_v4,
            _ => loop {
                let mut a = self.server_v4.octets();
                a[3] = self.rng.byte();
                let addr = Ipv4Addr::from(a);
                if addr != self.server_v4 && addr != self.host_v4 && a[3] != 0 && a[3] != 255 {
                    return addr;
                }
            },
        }
    }

    fn spoof_v6(&mut self) -> Ipv6Addr {
        match self.rng.below(20) {
            0 => Ipv6Addr::UNSPECIFIED,
            1 => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            2 => self.server_v6,
            3 => Ipv6Addr::LOCALHOST,
            _ => loop {
                let mut a = if self.rng.chance(30) {
                    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0).octets()
                } else {
                    self.server_v6.octets()
                };
                for b in &mut a[8..] {
                    *b = self.rng.byte();
                }
                let addr = Ipv6Addr::from(a);
                if addr != self.server_v6 && addr != self.host_v6 {
                    return addr;
                }
            },
        }
    }

    /// A spoofed source and the server (now and then another) as destination, with MACs and
    /// ports, for `frames`.
    fn endpoints(&mut self, v6: bool) -> (Peer, Peer) {
        let (src, dst): (IpAddress, IpAddress) = if v6 {
            let dst = if self.rng.chance(90) {
                self.server_v6
            } else {
                let group = self.rng.pick(&[1, 2, 0x16]);
                Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, group)
            };
            (self.spoof_v6().into(), dst.into())
        } else {
            let dst = if self.rng.chance(90) {
                self.server_v4
            } else {
                self.rng.pick(&[
                    Ipv4Addr::BROADCAST,
                    Ipv4Addr::new(192, 168, 69, 255),
                    Ipv4Addr::new(224, 0, 0, 1),
                ])
            };
            (self.spoof_v4().into(), dst.into())
        };
        let src = peer(self.src_mac(), src, self.rng.u16());
        let dst = peer(self.dst_mac(), dst, self.port());
        (src, dst)
    }

    fn port(&mut self) -> u16 {
        if self.rng.chance(70) {
            self.port
        } else {
            self.rng.u16()
        }
    }

    /// A valid UDP frame from `frames` to mutate.
    fn udp_frame(&mut self, v6: bool, payload_len: usize) -> Vec<u8> {
        let (s, d) = self.endpoints(v6);
        frames::udp(&s, &d, &self.rng.bytes(payload_len)).to_vec()
    }

    /// A valid TCP frame from `frames` to mutate, with the segment closest to `flags`.
    fn tcp_frame(&mut self, v6: bool, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (s, d) = self.endpoints(v6);
        let (control, ack) = control_of(flags);
        let (seq, ack) = (self.rng.u32(), ack.then(|| self.rng.u32()));
        frames::tcp(&s, &d, control, seq, ack, payload).to_vec()
    }

    /// A valid frame from `frames` carrying `payload` as IP protocol `proto`.
    fn ip_frame(&mut self, v6: bool, proto: u8, payload: &[u8]) -> Vec<u8> {
        let (s, d) = self.endpoints(v6);
        frames::ip(&s, &d, IpProtocol::from(proto), payload).to_vec()
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        // At least a header's worth: the kernel refuses shorter frames.
        let len = 14 + self.rng.below(MAX_FRAME - 13);
        let mut f = self.rng.bytes(len);
        if self.rng.chance(60) {
            f[..6].copy_from_slice(&SERVER_MAC);
            let et = self.rng.pick(&[ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_VLAN]);
            f[12..14].copy_from_slice(&et.to_be_bytes());
            if len > 14 && self.rng.chance(50) {
                // A plausible version nibble, so the IP parsers look further.
                f[14] = if et == ETH_IPV6 { 0x60 } else { 0x45 } | (f[14] & 0x0f);
            }
        }
        f
    }

    fn ethernet_junk(&mut self) -> Vec<u8> {
        match self.rng.below(4) {
            // Runts: a header and a few bytes, far below Ethernet's 60-byte minimum (the
            // kernel refuses frames shorter than a header, EINVAL).
            0 => {
                let et = self.rng.pick(&[ETH_IPV4, ETH_IPV6, ETH_ARP]);
                let mut f = ethernet(self.dst_mac(), self.src_mac(), et);
                let n = 1 + self.rng.below(8);
                f.extend_from_slice(&self.rng.bytes(n));
                f
            }
            // A header and nothing else.
            1 => {
                let et = self.rng.pick(&[ETH_IPV4, ETH_IPV6, ETH_ARP]);
                ethernet(self.dst_mac(), self.src_mac(), et)
            }
            // 802.1Q tags (once or twice) in front of an IP packet's ethertype.
            2 => {
                let mut f = self.udp_frame(false, 8);
                let mut tags = ETH_VLAN.to_be_bytes().to_vec();
                tags.extend_from_slice(&self.rng.u16().to_be_bytes());
                if self.rng.chance(50) {
                    tags.extend_from_slice(&ETH_VLAN.to_be_bytes());
                    tags.extend_from_slice(&self.rng.u16().to_be_bytes());
                }
                f.splice(12..12, tags);
                f
            }
            // Unknown or mismatched ethertypes (IPv6 inside an IPv4 type and back).
            _ => {
                let v6 = self.rng.chance(50);
                let mut f = self.udp_frame(v6, 4);
                let et = if self.rng.chance(50) {
                    if v6 { ETH_IPV4 } else { ETH_IPV6 }
                } else {
                    self.rng.u16()
                };
                f[12..14].copy_from_slice(&et.to_be_bytes());
                f
            }
        }
    }

    fn ipv4_version_ihl(&mut self) -> Vec<u8> {
        let n = self.rng.below(64);
        let mut f = self.udp_frame(false, n);
        if self.rng.chance(50) {
            let v = self.rng.pick(&[0u8, 1, 2, 3, 5, 6, 7, 15]);
            f[14] = (v << 4) | (f[14] & 0x0f);
        } else {
            // Shorter than the fixed header, or longer than the packet.
            f[14] = 0x40 | self.rng.pick(&[0u8, 1, 4, 14, 15]);
        }
        if self.rng.chance(70) {
            fix_ipv4_checksum(&mut f);
        }
        f
    }

    fn ipv4_total_len(&mut self) -> Vec<u8> {
        let n = self.rng.below(64);
        let mut f = self.udp_frame(false, n);
        let actual = (f.len() - 14) as u16;
        let total = self.rng.pick(&[
            0,
            1,
            19,
            20,
            27,
            actual.saturating_sub(1),
            actual + 1,
            actual + 200,
            0xffff,
        ]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        fix_ipv4_checksum(&mut f);
        if self.rng.chance(30) {
            // Cut the frame inside the IP header.
            let cut = 14 + self.rng.below(20);
            f.truncate(cut);
        }
        f
    }

    fn ipv4_bad_checksum(&mut self) -> Vec<u8> {
        let mut f = if self.rng.chance(50) {
            let n = self.rng.below(64);
            self.udp_frame(false, n)
        } else {
            self.tcp_frame(false, SYN, &[])
        };
        let c = u16::from_be_bytes([f[24], f[25]]) ^ (1 + self.rng.u16() % 0xfffe);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn ipv4_options(&mut self) -> Vec<u8> {
        let words = 6 + self.rng.below(10); // IHL 6..=15
        let opts = match self.rng.below(3) {
            0 => self.rng.bytes((words - 5) * 4),
            // Options whose length bytes lie: 0, 1, past the header.
            1 => {
                let mut o = vec![
                    self.rng.pick(&[7u8, 68, 131, 137, 148]),
                    self.rng.pick(&[0u8, 1, 2, 40, 255]),
                ];
                o.resize((words - 5) * 4, self.rng.byte());
                o
            }
            _ => {
                let mut o = vec![1u8; (words - 5) * 4]; // NOPs
                let last = o.len() - 1;
                o[last] = self.rng.pick(&[0u8, 7, 68]);
                o
            }
        };
        // A valid SYN or datagram with the options put into its IP header (the transport
        // checksum does not cover them).
        let mut f = if self.rng.chance(50) {
            self.tcp_frame(false, SYN, &[])
        } else {
            self.udp_frame(false, 8)
        };
        f.splice(ETH + 20..ETH + 20, opts);
        f[ETH] = 0x40 | words as u8;
        fix_ip_length(&mut f);
        f
    }

    fn ipv4_fragment(&mut self) -> Vec<u8> {
        let other = self.rng.byte();
        let mut f = match self.rng.pick(&[PROTO_TCP, PROTO_UDP, PROTO_ICMP, other]) {
            PROTO_TCP => self.tcp_frame(false, SYN | ACK, &[]),
            PROTO_UDP => self.udp_frame(false, 64),
            proto => {
                let n = 8 + self.rng.below(64);
                let body = self.rng.bytes(n);
                self.ip_frame(false, proto, &body)
            }
        };
        // A piece of it: the first few bytes (tiny fragments) or all.
        let body = f.len() - (ETH + 20);
        if self.rng.chance(50) {
            let cut = 1 + self.rng.below(body);
            f.truncate(ETH + 20 + cut);
        }
        // More-fragments and/or an offset (in 8-byte units), overlapping or past 64 KiB.
        let offset: u16 = self.rng.pick(&[0, 1, 2, 185, 0x1fff]);
        let mf = if offset == 0 || self.rng.chance(50) {
            0x2000
        } else {
            0
        };
        let id = self.rng.u16();
        f[18..20].copy_from_slice(&id.to_be_bytes());
        f[20..22].copy_from_slice(&(mf | offset).to_be_bytes());
        fix_ip_length(&mut f);
        f
    }

    fn ipv6_header_junk(&mut self) -> Vec<u8> {
        let n = self.rng.below(64);
        let mut f = self.udp_frame(true, n);
        let actual = (f.len() - 54) as u16;
        if self.rng.chance(20) {
            f[21] = 0; // hop limit 0
        }
        match self.rng.below(4) {
            0 => f[14] = (self.rng.pick(&[0u8, 4, 5, 7, 15]) << 4) | (f[14] & 0x0f),
            1 => {
                let len = self
                    .rng
                    .pick(&[0, 1, 7, actual.saturating_sub(1), actual + 1, 0xffff]);
                f[18..20].copy_from_slice(&len.to_be_bytes());
            }
            2 => f[20] = self.rng.byte(), // next header
            _ => {
                let cut = 14 + self.rng.below(40);
                f.truncate(cut);
            }
        }
        f
    }

    fn ipv6_extension_junk(&mut self) -> Vec<u8> {
        // Hop-by-hop (0), routing (43), fragment (44), destination options (60), ESP (50),
        // AH (51), no next header (59).
        let first = self.rng.pick(&[0u8, 43, 44, 60, 50, 51, 59, 0, 60]);
        let mut ext = Vec::new();
        let inner_next = self
            .rng
            .pick(&[PROTO_UDP, PROTO_TCP, PROTO_ICMPV6, 0, 43, 60, 255]);
        match first {
            44 => {
                ext.push(inner_next);
                ext.push(0);
                ext.extend_from_slice(&self.rng.u16().to_be_bytes()); // offset, M
                ext.extend_from_slice(&self.rng.u32().to_be_bytes());
            }
            59 => {}
            _ => {
                ext.push(inner_next);
                let len_units = self.rng.pick(&[0u8, 1, 2, 255]);
                ext.push(len_units);
                // Option TLVs whose lengths run past the header, unknown options that ask
                // for an ICMP error, Pad1/PadN, or noise.
                let body_len = 6 + 8 * usize::from(len_units.min(3));
                let mut body = match self.rng.below(3) {
                    0 => vec![
                        self.rng.pick(&[0x01u8, 0x05, 0xc2, 0x80, 0x3e]),
                        self.rng.pick(&[0u8, 4, 200, 255]),
                    ],
                    1 => vec![0u8; body_len],
                    _ => self.rng.bytes(body_len),
                };
                body.resize(body_len, self.rng.byte());
                ext.extend_from_slice(&body);
            }
        }
        // A valid datagram (or noise) with the extension headers put in front of it.
        let mut f = if inner_next == PROTO_UDP {
            self.udp_frame(true, 16)
        } else {
            let n = self.rng.below(40);
            let noise = self.rng.bytes(n);
            self.ip_frame(true, inner_next, &noise)
        };
        f.splice(ETH + 40..ETH + 40, ext);
        f[20] = first;
        fix_ip_length(&mut f);
        f
    }

    fn tcp_flags(&mut self) -> Vec<u8> {
        let any = self.rng.byte();
        let flags = self.rng.pick(&[
            SYN | FIN,
            SYN | RST,
            SYN | FIN | RST,
            SYN | RST | ACK,
            FIN | RST,
            FIN,
            0,
            0xff,
            0x3f,
            URG | PSH | FIN, // "Christmas tree"
            SYN | URG,
            SYN | 0xc0, // SYN with ECE+CWR
            RST | PSH,
            any,
        ]);
        let payload = if self.rng.chance(50) {
            let n = self.rng.below(100);
            self.rng.bytes(n)
        } else {
            Vec::new()
        };
        let v6 = self.rng.chance(50);
        let mut f = self.tcp_frame(v6, flags, &payload);
        let at = transport_at(&f);
        f[at + 13] = flags;
        fix_checksum(&mut f, at);
        f
    }

    fn tcp_offset(&mut self) -> Vec<u8> {
        let flags = self
            .rng
            .pick(&[SYN, ACK, SYN | ACK, PSH | ACK, FIN | ACK, RST]);
        let payload = if self.rng.chance(50) {
            let n = self.rng.below(24);
            self.rng.bytes(n)
        } else {
            Vec::new()
        };
        let v6 = self.rng.chance(50);
        let mut f = self.tcp_frame(v6, flags, &payload);
        let at = transport_at(&f);
        let words = self.rng.pick(&[0u8, 1, 2, 4, 6, 10, 15]);
        f[at + 12] = words << 4;
        fix_checksum(&mut f, at);
        f
    }

    fn tcp_options(&mut self) -> Vec<u8> {
        let flags = self.rng.pick(&[SYN, SYN, SYN | ACK, ACK, PSH | ACK]);
        let mut options = match self.rng.below(4) {
            0 => {
                let n = self.rng.below(41);
                self.rng.bytes(n)
            }
            // Known options with wrong lengths or values.
            1 => self
                .rng
                .pick(&[
                    &[2u8, 0][..],                                      // MSS, length 0
                    &[2, 1, 0, 0],                                      // MSS, length 1
                    &[2, 3, 5],                                         // MSS, length 3
                    &[2, 4, 0, 0],                                      // MSS 0
                    &[2, 4, 0, 1],                                      // MSS 1
                    &[2, 255, 5, 0xb4],                                 // length past the options
                    &[3, 3, 200],                                       // window scale 200
                    &[3, 2],                                            // window scale, length 2
                    &[3, 4, 14, 0],                                     // window scale, length 4
                    &[4, 3, 0],                                         // SACK permitted, length 3
                    &[5, 3, 0, 0],                                      // SACK, length 3
                    &[5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0],                // SACK, length not 2 + 8n
                    &[5, 34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // SACK past the end
                    &[8, 2],                                            // timestamps, length 2
                    &[8, 9, 0, 0, 0, 0, 0, 0, 0],                       // timestamps, length 9
                    &[8, 10, 0, 0, 0],                                  // timestamps, cut short
                    &[0, 2, 4, 5, 0xb4],                                // EOL, then more
                    &[254, 0],                                          // experimental, length 0
                    &[30, 1],                                           // MPTCP, length 1
                ])
                .to_vec(),
            // Many NOPs, then an option cut short by the end of the header.
            2 => {
                let mut o = vec![1u8; 4 * self.rng.below(9) + 3];
                o.push(self.rng.pick(&[2u8, 3, 5, 8]));
                o
            }
            // A valid set, shuffled with noise.
            _ => {
                let mut o = vec![2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 8, 10];
                o.extend_from_slice(&self.rng.bytes(8));
                let i = self.rng.below(o.len());
                o[i] = self.rng.byte();
                o
            }
        };
        // Up to 40 bytes of options fit (data offset 15).
        options.truncate(40);
        let v6 = self.rng.chance(50);
        let mut f = self.tcp_frame(v6, flags, &[]);
        set_tcp_options(&mut f, &options);
        f
    }

    fn tcp_bad_checksum(&mut self) -> Vec<u8> {
        let flags = self
            .rng
            .pick(&[SYN, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK]);
        let payload = if flags & PSH != 0 {
            self.rng.bytes(32)
        } else {
            Vec::new()
        };
        let v6 = self.rng.chance(50);
        let mut f = self.tcp_frame(v6, flags, &payload);
        let at = transport_at(&f) + 16;
        f[at] ^= 1 + self.rng.byte() % 255;
        f
    }

    fn udp_lengths(&mut self) -> Vec<u8> {
        let v6 = self.rng.chance(50);
        let n = self.rng.below(64);
        let mut f = self.udp_frame(v6, n);
        let at = transport_at(&f);
        let actual = (f.len() - at) as u16;
        let len = self
            .rng
            .pick(&[0u16, 1, 7, actual - 1, actual + 1, actual + 100, 0xffff]);
        f[at + 4..at + 6].copy_from_slice(&len.to_be_bytes());
        match self.rng.below(3) {
            // Checksum made for the lying length.
            0 => fix_checksum(&mut f, at),
            // No checksum (not allowed over IPv6).
            1 => f[at + 6..at + 8].fill(0),
            _ => {}
        }
        f
    }

    fn icmp_junk(&mut self) -> Vec<u8> {
        let v6 = self.rng.chance(50);
        let n = self.rng.below(48);
        let (s, mut d) = self.endpoints(v6);
        let msg = if v6 {
            // Neighbour discovery (133-137) with junk options, echo, errors, unknown types.
            let ty = self
                .rng
                .pick(&[128u8, 129, 133, 134, 135, 136, 137, 1, 2, 3, 4, 143, 200]);
            let mut m = vec![ty, self.rng.byte(), 0, 0];
            m.extend_from_slice(&self.rng.bytes(4));
            if (133..=137).contains(&ty) {
                // A target that is never the host (no neighbour-cache poisoning for the
                // real clients): the server itself or a random one.
                let target = if self.rng.chance(50) {
                    self.server_v6
                } else {
                    self.spoof_v6()
                };
                if ty == 135 || ty == 136 || ty == 137 {
                    m.extend_from_slice(&target.octets());
                }
                // Options: source/target link-layer address with bad lengths (0 would loop a
                // naive parser), prefix information, MTU, or noise.
                let opt = self.rng.pick(&[
                    &[1u8, 0][..],
                    &[2, 0, 0, 0, 0, 0, 0, 0],
                    &[1, 1, 6, 0x77, 1, 2, 3, 4],
                    &[2, 1, 6, 0x77, 1, 2, 3, 4],
                    &[3, 4, 64, 0xc0],
                    &[5, 1, 0, 0, 0, 0, 0, 1],
                    &[1, 255],
                ]);
                m.extend_from_slice(opt);
                if ty == 135 && self.rng.chance(60) {
                    // The server's solicited-node multicast address, or the server.
                    let mut a = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0).octets();
                    a[13..].copy_from_slice(&self.server_v6.octets()[13..]);
                    d.addr = if self.rng.chance(50) {
                        Ipv6Addr::from(a)
                    } else {
                        self.server_v6
                    }
                    .into();
                }
            } else {
                m.extend_from_slice(&self.rng.bytes(n));
            }
            m
        } else {
            let ty = self.rng.pick(&[0u8, 3, 4, 5, 8, 11, 12, 13, 17, 40, 255]);
            let mut m = vec![ty, self.rng.byte(), 0, 0];
            m.extend_from_slice(&self.rng.bytes(4 + n));
            m
        };
        let proto = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
        let mut f = frames::ip(&s, &d, IpProtocol::from(proto), &msg).to_vec();
        let at = transport_at(&f);
        if self.rng.chance(80) {
            fix_checksum(&mut f, at);
        }
        if self.rng.chance(30) {
            let cut = self.rng.below(msg.len());
            f.truncate(at + cut);
            fix_ip_length(&mut f);
        }
        if v6 {
            f[21] = 255; // hop limit, as neighbour discovery requires
        }
        f
    }

    fn arp_junk(&mut self) -> Vec<u8> {
        let mac = self.src_mac();
        // Never the host's address as sender: that would poison the server's ARP cache for
        // the real clients.
        let sender = loop {
            let a = self.spoof_v4();
            if a != self.host_v4 {
                break a;
            }
        };
        let target = if self.rng.chance(60) {
            self.server_v4
        } else {
            self.spoof_v4()
        };
        let good = self.rng.chance(40);
        let operation = self.rng.pick(&[1u16, 2, 0, 3, 4, 8, 9, 0xffff]);
        // A well-formed request or reply aimed at the server from an on-link sender is no
        // junk: smoltcp answers it and caches the sender (the neighbour-cache case of
        // tests/tap_robustness.rs sends those on purpose, with `arp_request`). Here the
        // sender of such a packet is one smoltcp must not cache.
        let sender = if good && operation <= 2 && target == self.server_v4 {
            self.rng.pick(&[
                Ipv4Addr::BROADCAST,
                Ipv4Addr::new(224, 0, 0, 1),
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::new(10, 1, 2, 3),
            ])
        } else {
            sender
        };
        let mut a = Vec::with_capacity(28);
        a.extend_from_slice(
            &(if good {
                1u16
            } else {
                self.rng.pick(&[0u16, 6, 0xffff])
            })
            .to_be_bytes(),
        );
        a.extend_from_slice(
            &(if good {
                ETH_IPV4
            } else {
                self.rng.pick(&[0u16, ETH_IPV6, 0xffff])
            })
            .to_be_bytes(),
        );
        a.push(if good {
            6
        } else {
            self.rng.pick(&[0u8, 5, 7, 255])
        });
        a.push(if good {
            4
        } else {
            self.rng.pick(&[0u8, 3, 16, 255])
        });
        a.extend_from_slice(&operation.to_be_bytes());
        a.extend_from_slice(&mac);
        a.extend_from_slice(&sender.octets());
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&target.octets());
        if self.rng.chance(30) {
            let cut = self.rng.below(a.len());
            a.truncate(cut);
        } else if self.rng.chance(20) {
            a.extend_from_slice(&self.rng.bytes(32));
        }
        let dst = if self.rng.chance(50) {
            BROADCAST
        } else {
            self.dst_mac()
        };
        let mut f = ethernet(dst, mac, ETH_ARP);
        f.extend_from_slice(&a);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smolecho::smoltcp::wire::{EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket};

    #[test]
    fn checksum_of_a_known_ipv4_header() {
        // The example of RFC 1071's errata-free walk-through: a header whose sum is 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&h]), 0xb861);
    }

    /// The shared builders' checksums, recomputed with this file's own sum: an emitter bug
    /// that smoltcp's parser shares would show here.
    #[test]
    fn the_shared_builders_checksums_agree_with_an_independent_sum() {
        let server = |v6| peer(SERVER_MAC, ip(if v6 { "fdaa::1" } else { "10.0.0.1" }), 7);
        let client = |v6| {
            peer(
                [6, 0x77, 0, 0, 0, 2],
                ip(if v6 { "fdaa::2" } else { "10.0.0.2" }),
                4242,
            )
        };
        for v6 in [false, true] {
            let (c, s) = (client(v6), server(v6));
            let built = [
                frames::syn(&c, &s, 1).to_vec(),
                frames::tcp(&c, &s, TcpControl::Psh, 9, Some(3), b"odd length").to_vec(),
                frames::udp(&c, &s, b"a datagram").to_vec(),
                frames::udp(&c, &s, b"").to_vec(),
            ];
            for f in built {
                let mut again = f.clone();
                if !v6 {
                    fix_ipv4_checksum(&mut again);
                }
                fix_checksum(&mut again, transport_at(&f));
                assert_eq!(again, f, "v6 {v6}: {f:02x?}");
            }
        }
    }

    #[test]
    fn every_junk_kind_is_listed_once_in_order_with_its_own_name() {
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert!(!kind.name().is_empty());
        }
        let mut names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
    }

    #[test]
    fn the_junk_generator_makes_frames_of_every_kind_within_the_mtu() {
        for seed in 1..=20u64 {
            let mut junk = Junk::new(
                seed * 0x9E37_79B9,
                ("192.168.69.1", "fdaa::1"),
                ("192.168.69.100", "fdaa::100"),
                8000,
            );
            let mut kinds = [0usize; Kind::ALL.len()];
            for _ in 0..10_000 {
                let (kind, frame) = junk.next_frame();
                assert!(
                    (14..=MAX_FRAME).contains(&frame.len()),
                    "{} bytes",
                    frame.len()
                );
                kinds[kind.index()] += 1;
            }
            assert!(kinds.iter().all(|&n| n == 10_000 / Kind::ALL.len()));
        }
    }

    /// The mutators change what they are asked to and keep the rest valid: options put into
    /// a SYN's TCP header parse, with every length and checksum right.
    #[test]
    fn replaced_tcp_options_keep_lengths_and_checksums_right() {
        for v6 in [false, true] {
            let (c, s) = if v6 {
                (
                    peer([6, 0x77, 0, 0, 0, 2], ip("fdaa::2"), 4242),
                    peer(SERVER_MAC, ip("fdaa::1"), 7),
                )
            } else {
                (
                    peer([6, 0x77, 0, 0, 0, 2], ip("10.0.0.2"), 4242),
                    peer(SERVER_MAC, ip("10.0.0.1"), 7),
                )
            };
            let mut f = frames::syn(&c, &s, 1).to_vec();
            // Window scale 7, SACK permitted, MSS 1200: 9 bytes, padded to 12.
            set_tcp_options(&mut f, &[3, 3, 7, 4, 2, 2, 4, 0x04, 0xb0]);
            let eth = EthernetFrame::new_checked(&f[..]).expect("ethernet");
            let seg = if v6 {
                let ip = Ipv6Packet::new_checked(eth.payload()).expect("ipv6");
                assert_eq!(usize::from(ip.payload_len()), 32);
                ip.payload().to_vec()
            } else {
                let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
                assert!(ip.verify_checksum());
                assert_eq!(usize::from(ip.total_len()), 52);
                ip.payload().to_vec()
            };
            let tcp = TcpPacket::new_checked(&seg[..]).expect("tcp");
            assert!(tcp.verify_checksum(&c.addr, &s.addr));
            assert_eq!(tcp.header_len(), 32);
            let repr = TcpRepr::parse(&tcp, &c.addr, &s.addr, &Default::default()).expect("repr");
            assert_eq!(
                (
                    repr.control,
                    repr.max_seg_size,
                    repr.window_scale,
                    repr.sack_permitted
                ),
                (TcpControl::Syn, Some(1200), Some(7), true)
            );
        }
    }

    #[test]
    fn the_spoofed_syn_is_a_kernel_like_syn_to_the_server() {
        let (v4, v6) = (Ipv4Addr::new(10, 69, 0, 1), "fdaa::1".parse().expect("v6"));
        for n in [0u32, 1] {
            let f = spoofed_syn(n, v4, v6, 8000);
            let eth = EthernetFrame::new_checked(&f[..]).expect("ethernet");
            assert_eq!(eth.dst_addr(), EthernetAddress(SERVER_MAC));
            let (src, dst, seg): (IpAddress, IpAddress, &[u8]) = if n == 0 {
                let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
                (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
            } else {
                let ip = Ipv6Packet::new_checked(eth.payload()).expect("ipv6");
                (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
            };
            assert_eq!(
                dst,
                if n == 0 {
                    IpAddress::from(v4)
                } else {
                    IpAddress::from(v6)
                }
            );
            let tcp = TcpPacket::new_checked(seg).expect("tcp");
            let repr = TcpRepr::parse(&tcp, &src, &dst, &Default::default()).expect("repr");
            assert_eq!(repr.control, TcpControl::Syn);
            assert_eq!(repr.ack_number, None);
            assert_eq!(repr.dst_port, 8000);
            assert_eq!(
                (repr.max_seg_size, repr.window_scale, repr.sack_permitted),
                (Some(1460), Some(7), true)
            );
        }
    }
}
