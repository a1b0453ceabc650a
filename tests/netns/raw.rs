//! Raw Ethernet frames onto a TAP from its Linux side, for `tests/tap_robustness.rs`: an
//! `AF_PACKET` socket bound to the TAP (what it sends goes to the process that holds the TAP,
//! `tap_server`), a pacer that bounds the rate, spoofed SYNs for the flood, and a generator
//! of malformed frames.
//!
//! Only ever used inside a case's own network namespace, on the TAP created there. Frames are
//! built by hand (not with smoltcp's emitters), so a bug in smoltcp's wire code cannot hide
//! one in its parser.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

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
/// Largest frame the TAP takes (MTU 1500 + Ethernet header).
const MAX_FRAME: usize = 1514;

/// TCP flags.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

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
// Building frames
// ---------------------------------------------------------------------------------------------

/// An IP address of either version, as raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Ip {
    pub fn parse(s: &str) -> Self {
        match s.parse::<std::net::IpAddr>().expect("an IP address") {
            std::net::IpAddr::V4(a) => Ip::V4(a.octets()),
            std::net::IpAddr::V6(a) => Ip::V6(a.octets()),
        }
    }
}

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

/// The pseudo-header of a transport checksum.
fn pseudo(src: Ip, dst: Ip, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => {
            p.extend_from_slice(&s);
            p.extend_from_slice(&d);
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (Ip::V6(s), Ip::V6(d)) => {
            p.extend_from_slice(&s);
            p.extend_from_slice(&d);
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed IP versions"),
    }
    p
}

/// An Ethernet header.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(MAX_FRAME);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// A 20-byte IPv4 header with a correct checksum.
pub fn ipv4_header(src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// A 40-byte IPv6 header.
pub fn ipv6_header(src: [u8; 16], dst: [u8; 16], next: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h
}

/// An IP packet (either version) carrying `payload` as protocol `proto`.
pub fn ip_packet(src: Ip, dst: Ip, proto: u8, payload: &[u8]) -> (u16, Vec<u8>) {
    let (ethertype, mut p) = match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => (ETH_IPV4, ipv4_header(s, d, proto, payload.len())),
        (Ip::V6(s), Ip::V6(d)) => (ETH_IPV6, ipv6_header(s, d, proto, payload.len())),
        _ => panic!("mixed IP versions"),
    };
    p.extend_from_slice(payload);
    (ethertype, p)
}

/// A TCP segment description; `offset_words` `None` means the right one for `options`.
#[derive(Debug, Clone)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub offset_words: Option<u8>,
    pub window: u16,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    /// The segment bytes with a correct checksum for `src` -> `dst`.
    pub fn segment(&self, src: Ip, dst: Ip) -> Vec<u8> {
        let mut options = self.options.clone();
        while !options.len().is_multiple_of(4) {
            options.push(0);
        }
        let words = self
            .offset_words
            .unwrap_or(((20 + options.len()) / 4) as u8);
        let mut s = Vec::with_capacity(20 + options.len() + self.payload.len());
        s.extend_from_slice(&self.src_port.to_be_bytes());
        s.extend_from_slice(&self.dst_port.to_be_bytes());
        s.extend_from_slice(&self.seq.to_be_bytes());
        s.extend_from_slice(&self.ack.to_be_bytes());
        s.extend_from_slice(&[(words & 0x0f) << 4, self.flags]);
        s.extend_from_slice(&self.window.to_be_bytes());
        s.extend_from_slice(&[0, 0, 0, 0]);
        s.extend_from_slice(&options);
        s.extend_from_slice(&self.payload);
        let c = checksum(&[&pseudo(src, dst, PROTO_TCP, s.len()), &s]);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        s
    }
}

/// A whole Ethernet frame: `src_mac` -> `dst_mac`, IP `src` -> `dst`, `proto` carrying
/// `transport`.
pub fn frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ip,
    dst: Ip,
    proto: u8,
    transport: &[u8],
) -> Vec<u8> {
    let (ethertype, packet) = ip_packet(src, dst, proto, transport);
    let mut f = ethernet(dst_mac, src_mac, ethertype);
    f.extend_from_slice(&packet);
    f
}

/// Initial SYN `n` of the flood: from one of 1,000 spoofed addresses (500 IPv4 in
/// 10.69.4.0-10.69.5.243, 500 IPv6 fdaa::5:0-fdaa::5:1f3; inside the server's /16 and /64, so
/// it asks for them by ARP or neighbour solicitation, which nobody answers), each with its
/// own MAC, to the server's `port`.
pub fn spoofed_syn(n: u32, server_v4: [u8; 4], server_v6: [u8; 16], port: u16) -> Vec<u8> {
    let host = n % 1000;
    let mac = [0x02, 0x66, 0, 0, (host >> 8) as u8, host as u8];
    let (src, dst) = if host.is_multiple_of(2) {
        let h = host / 2;
        let src = [10, 69, 4 + (h / 250) as u8, (h % 250) as u8 + 1];
        (Ip::V4(src), Ip::V4(server_v4))
    } else {
        let h = host / 2;
        let mut src = [0u8; 16];
        src[..2].copy_from_slice(&[0xfd, 0xaa]);
        src[13] = 5;
        src[14..].copy_from_slice(&(h as u16).to_be_bytes());
        (Ip::V6(src), Ip::V6(server_v6))
    };
    let tcp = Tcp {
        src_port: 1024 + (n % 60000) as u16,
        dst_port: port,
        seq: n.wrapping_mul(2_654_435_761),
        ack: 0,
        flags: SYN,
        offset_words: None,
        window: 64240,
        // MSS 1460, SACK permitted, window scale 7: what a kernel sends.
        options: vec![2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7],
        payload: Vec::new(),
    };
    frame(SERVER_MAC, mac, src, dst, PROTO_TCP, &tcp.segment(src, dst))
}

// ---------------------------------------------------------------------------------------------
// Malformed frames
// ---------------------------------------------------------------------------------------------

/// The kinds of malformed frame [`Junk`] makes, in turn.
pub const JUNK_KINDS: [&str; 16] = [
    "random bytes",
    "Ethernet runts, VLAN tags, unknown types",
    "IPv4 bad version or header length",
    "IPv4 bad total length",
    "IPv4 bad header checksum",
    "IPv4 garbage options",
    "IPv4 fragments",
    "IPv6 bad header, lengths, next header",
    "IPv6 garbage extension headers",
    "TCP impossible flag combinations",
    "TCP bad data offset",
    "TCP garbage options",
    "TCP bad checksum",
    "UDP bad lengths and checksums",
    "ICMP and ICMPv6/NDP junk",
    "ARP junk",
];

/// Makes malformed frames for a server at `server_v4`/`server_v6` with the Linux side at
/// `host_v4`/`host_v6`. No frame claims a host address as its source, so none can poison the
/// server's neighbour cache for the real clients, nor hit their connections.
pub struct Junk {
    pub rng: Rng,
    pub server_v4: [u8; 4],
    pub server_v6: [u8; 16],
    pub host_v4: [u8; 4],
    pub host_v6: [u8; 16],
    pub port: u16,
    n: usize,
}

impl Junk {
    pub fn new(seed: u64, server: (&str, &str), host: (&str, &str), port: u16) -> Self {
        let v4 = |s: &str| match Ip::parse(s) {
            Ip::V4(a) => a,
            Ip::V6(_) => panic!("{s} is not IPv4"),
        };
        let v6 = |s: &str| match Ip::parse(s) {
            Ip::V6(a) => a,
            Ip::V4(_) => panic!("{s} is not IPv6"),
        };
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

    /// The next frame and the index of its kind in [`JUNK_KINDS`].
    pub fn next_frame(&mut self) -> (usize, Vec<u8>) {
        let kind = self.n % JUNK_KINDS.len();
        self.n += 1;
        let mut f = match kind {
            0 => self.random_bytes(),
            1 => self.ethernet_junk(),
            2 => self.ipv4_version_ihl(),
            3 => self.ipv4_total_len(),
            4 => self.ipv4_bad_checksum(),
            5 => self.ipv4_options(),
            6 => self.ipv4_fragment(),
            7 => self.ipv6_header_junk(),
            8 => self.ipv6_extension_junk(),
            9 => self.tcp_flags(),
            10 => self.tcp_offset(),
            11 => self.tcp_options(),
            12 => self.tcp_bad_checksum(),
            13 => self.udp_lengths(),
            14 => self.icmp_junk(),
            _ => self.arp_junk(),
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
    fn spoof_v4(&mut self) -> [u8; 4] {
        match self.rng.below(20) {
            0 => [255, 255, 255, 255],
            1 => [224, 0, 0, 1],
            2 => [127, 0, 0, 1],
            3 => [0, 0, 0, 0],
            4 => self.server_v4,
            _ => loop {
                let mut a = self.server_v4;
                a[3] = self.rng.byte();
                if a != self.server_v4 && a != self.host_v4 && a[3] != 0 && a[3] != 255 {
                    return a;
                }
            },
        }
    }

    fn spoof_v6(&mut self) -> [u8; 16] {
        match self.rng.below(20) {
            0 => [0; 16],
            1 => {
                let mut a = [0u8; 16];
                a[0] = 0xff;
                a[1] = 0x02;
                a[15] = 1;
                a
            }
            2 => self.server_v6,
            3 => {
                let mut a = [0u8; 16];
                a[15] = 1; // ::1
                a
            }
            _ => loop {
                let mut a = self.server_v6;
                if self.rng.chance(30) {
                    a = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                }
                for b in &mut a[8..] {
                    *b = self.rng.byte();
                }
                if a != self.server_v6 && a != self.host_v6 {
                    return a;
                }
            },
        }
    }

    /// A spoofed source and the server (now and then another) as destination.
    fn endpoints(&mut self, v6: bool) -> (Ip, Ip) {
        if v6 {
            let dst = if self.rng.chance(90) {
                self.server_v6
            } else {
                let mut a = [0u8; 16];
                a[0] = 0xff;
                a[1] = 0x02;
                a[15] = self.rng.pick(&[1, 2, 0x16]);
                a
            };
            (Ip::V6(self.spoof_v6()), Ip::V6(dst))
        } else {
            let dst = if self.rng.chance(90) {
                self.server_v4
            } else {
                self.rng
                    .pick(&[[255, 255, 255, 255], [192, 168, 69, 255], [224, 0, 0, 1]])
            };
            (Ip::V4(self.spoof_v4()), Ip::V4(dst))
        }
    }

    fn port(&mut self) -> u16 {
        if self.rng.chance(70) {
            self.port
        } else {
            self.rng.u16()
        }
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
        let dst = self.dst_mac();
        let src = self.src_mac();
        match self.rng.below(4) {
            // Runts: a header and a few bytes, far below Ethernet's 60-byte minimum (the
            // kernel refuses frames shorter than a header, EINVAL).
            0 => {
                let mut f = ethernet(dst, src, self.rng.pick(&[ETH_IPV4, ETH_IPV6, ETH_ARP]));
                let n = 1 + self.rng.below(8);
                f.extend_from_slice(&self.rng.bytes(n));
                f
            }
            // A header and nothing else.
            1 => ethernet(dst, src, self.rng.pick(&[ETH_IPV4, ETH_IPV6, ETH_ARP])),
            // 802.1Q tags (once or twice) around an IP packet.
            2 => {
                let mut f = ethernet(dst, src, ETH_VLAN);
                f.extend_from_slice(&self.rng.u16().to_be_bytes());
                if self.rng.chance(50) {
                    f.extend_from_slice(&ETH_VLAN.to_be_bytes());
                    f.extend_from_slice(&self.rng.u16().to_be_bytes());
                }
                f.extend_from_slice(&ETH_IPV4.to_be_bytes());
                let (s, d) = self.endpoints(false);
                let (_, p) = ip_packet(s, d, PROTO_UDP, &self.rng.bytes(16));
                f.extend_from_slice(&p);
                f
            }
            // Unknown or mismatched ethertypes (IPv6 inside an IPv4 type and back).
            _ => {
                let v6 = self.rng.chance(50);
                let (s, d) = self.endpoints(v6);
                let (_, p) = ip_packet(s, d, PROTO_UDP, &self.rng.bytes(12));
                let et = if self.rng.chance(50) {
                    if v6 { ETH_IPV4 } else { ETH_IPV6 }
                } else {
                    self.rng.u16()
                };
                let mut f = ethernet(dst, src, et);
                f.extend_from_slice(&p);
                f
            }
        }
    }

    /// A valid UDP-over-IPv4 frame to mutate.
    fn ipv4_udp(&mut self, payload_len: usize) -> Vec<u8> {
        let (s, d) = self.endpoints(false);
        let payload = self.rng.bytes(payload_len);
        let udp = udp_datagram(s, d, self.rng.u16(), self.port(), &payload);
        let dst = self.dst_mac();
        let src = self.src_mac();
        frame(dst, src, s, d, PROTO_UDP, &udp)
    }

    /// Recompute the IPv4 header checksum of `f` (header at 14, length from its IHL, within
    /// the frame).
    fn fix_ipv4_checksum(f: &mut [u8]) {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        let end = (14 + ihl).min(f.len());
        if end < 26 {
            return;
        }
        f[24] = 0;
        f[25] = 0;
        let c = checksum(&[&f[14..end]]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }

    fn ipv4_version_ihl(&mut self) -> Vec<u8> {
        let n = self.rng.below(64);
        let mut f = self.ipv4_udp(n);
        if self.rng.chance(50) {
            let v = self.rng.pick(&[0u8, 1, 2, 3, 5, 6, 7, 15]);
            f[14] = (v << 4) | (f[14] & 0x0f);
        } else {
            // Shorter than the fixed header, or longer than the packet.
            f[14] = 0x40 | self.rng.pick(&[0u8, 1, 4, 14, 15]);
        }
        if self.rng.chance(70) {
            Self::fix_ipv4_checksum(&mut f);
        }
        f
    }

    fn ipv4_total_len(&mut self) -> Vec<u8> {
        let n = self.rng.below(64);
        let mut f = self.ipv4_udp(n);
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
        Self::fix_ipv4_checksum(&mut f);
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
            self.ipv4_udp(n)
        } else {
            let (s, d) = self.endpoints(false);
            let seg = self.syn_like(SYN).segment(s, d);
            let (dst, src) = (self.dst_mac(), self.src_mac());
            frame(dst, src, s, d, PROTO_TCP, &seg)
        };
        let c = u16::from_be_bytes([f[24], f[25]]) ^ (1 + self.rng.u16() % 0xfffe);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn ipv4_options(&mut self) -> Vec<u8> {
        let (s, d) = self.endpoints(false);
        let (Ip::V4(src), Ip::V4(dst)) = (s, d) else {
            unreachable!()
        };
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
        let payload = if self.rng.chance(50) {
            self.syn_like(SYN).segment(s, d)
        } else {
            udp_datagram(s, d, self.rng.u16(), self.port, &self.rng.bytes(8))
        };
        let proto = if payload.len() >= 20 && payload[13] & SYN != 0 {
            PROTO_TCP
        } else {
            PROTO_UDP
        };
        let total = (20 + opts.len() + payload.len()) as u16;
        let mut h = vec![0x40 | words as u8, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(&opts);
        let c = checksum(&[&h]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = ethernet(self.dst_mac(), self.src_mac(), ETH_IPV4);
        f.extend_from_slice(&h);
        f.extend_from_slice(&payload);
        f
    }

    fn ipv4_fragment(&mut self) -> Vec<u8> {
        let (s, d) = self.endpoints(false);
        let other = self.rng.byte();
        let proto = self.rng.pick(&[PROTO_TCP, PROTO_UDP, PROTO_ICMP, other]);
        let body = match proto {
            PROTO_TCP => self.syn_like(SYN | ACK).segment(s, d),
            PROTO_UDP => udp_datagram(s, d, self.rng.u16(), self.port, &self.rng.bytes(64)),
            _ => {
                let n = 8 + self.rng.below(64);
                self.rng.bytes(n)
            }
        };
        // A piece of it: the first few bytes (tiny fragments) or all.
        let cut = if self.rng.chance(50) {
            1 + self.rng.below(body.len())
        } else {
            body.len()
        };
        let (_, mut p) = ip_packet(s, d, proto, &body[..cut]);
        // More-fragments and/or an offset (in 8-byte units), overlapping or past 64 KiB.
        let offset: u16 = self.rng.pick(&[0, 1, 2, 185, 0x1fff]);
        let mf = if offset == 0 || self.rng.chance(50) {
            0x2000
        } else {
            0
        };
        p[4..6].copy_from_slice(&self.rng.u16().to_be_bytes());
        p[6..8].copy_from_slice(&(mf | offset).to_be_bytes());
        p[10] = 0;
        p[11] = 0;
        let c = checksum(&[&p[..20]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = ethernet(self.dst_mac(), self.src_mac(), ETH_IPV4);
        f.extend_from_slice(&p);
        f
    }

    fn ipv6_header_junk(&mut self) -> Vec<u8> {
        let (s, d) = self.endpoints(true);
        let n = self.rng.below(64);
        let udp = udp_datagram(s, d, self.rng.u16(), self.port(), &self.rng.bytes(n));
        let mut f = frame(self.dst_mac(), self.src_mac(), s, d, PROTO_UDP, &udp);
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
        let (s, d) = self.endpoints(true);
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
        let tail = if inner_next == PROTO_UDP {
            udp_datagram(s, d, self.rng.u16(), self.port, &self.rng.bytes(16))
        } else {
            let n = self.rng.below(40);
            self.rng.bytes(n)
        };
        let mut payload = ext;
        payload.extend_from_slice(&tail);
        let (Ip::V6(src), Ip::V6(dst)) = (s, d) else {
            unreachable!()
        };
        let mut f = ethernet(self.dst_mac(), self.src_mac(), ETH_IPV6);
        f.extend_from_slice(&ipv6_header(src, dst, first, payload.len()));
        f.extend_from_slice(&payload);
        f
    }

    /// A TCP segment with the given flags and a few typical fields.
    fn syn_like(&mut self, flags: u8) -> Tcp {
        Tcp {
            src_port: 1024 + self.rng.u16() % 60000,
            dst_port: self.port(),
            seq: self.rng.u32(),
            ack: if flags & ACK != 0 { self.rng.u32() } else { 0 },
            flags,
            offset_words: None,
            window: self.rng.u16(),
            options: if flags & SYN != 0 {
                vec![2, 4, 0x05, 0xb4]
            } else {
                Vec::new()
            },
            payload: Vec::new(),
        }
    }

    fn tcp_frame(&mut self, tcp: &Tcp) -> Vec<u8> {
        let v6 = self.rng.chance(50);
        let (s, d) = self.endpoints(v6);
        let seg = tcp.segment(s, d);
        let (dst, src) = (self.dst_mac(), self.src_mac());
        frame(dst, src, s, d, PROTO_TCP, &seg)
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
        let mut tcp = self.syn_like(flags);
        if self.rng.chance(50) {
            let n = self.rng.below(100);
            tcp.payload = self.rng.bytes(n);
        }
        self.tcp_frame(&tcp)
    }

    fn tcp_offset(&mut self) -> Vec<u8> {
        let flags = self
            .rng
            .pick(&[SYN, ACK, SYN | ACK, PSH | ACK, FIN | ACK, RST]);
        let mut tcp = self.syn_like(flags);
        tcp.offset_words = Some(self.rng.pick(&[0u8, 1, 2, 4, 6, 10, 15]));
        if self.rng.chance(50) {
            let n = self.rng.below(24);
            tcp.payload = self.rng.bytes(n);
        }
        self.tcp_frame(&tcp)
    }

    fn tcp_options(&mut self) -> Vec<u8> {
        let flags = self.rng.pick(&[SYN, SYN, SYN | ACK, ACK, PSH | ACK]);
        let mut tcp = self.syn_like(flags);
        tcp.options = match self.rng.below(4) {
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
        tcp.options.truncate(40);
        self.tcp_frame(&tcp)
    }

    fn tcp_bad_checksum(&mut self) -> Vec<u8> {
        let flags = self
            .rng
            .pick(&[SYN, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK]);
        let mut tcp = self.syn_like(flags);
        if flags & PSH != 0 {
            tcp.payload = self.rng.bytes(32);
        }
        let mut f = self.tcp_frame(&tcp);
        let at = if f[12..14] == ETH_IPV4.to_be_bytes() {
            14 + 20 + 16
        } else {
            14 + 40 + 16
        };
        f[at] ^= 1 + self.rng.byte() % 255;
        f
    }

    fn udp_lengths(&mut self) -> Vec<u8> {
        let v6 = self.rng.chance(50);
        let (s, d) = self.endpoints(v6);
        let n = self.rng.below(64);
        let payload = self.rng.bytes(n);
        let mut udp = udp_datagram(s, d, self.rng.u16(), self.port(), &payload);
        let actual = udp.len() as u16;
        let len = self
            .rng
            .pick(&[0u16, 1, 7, actual - 1, actual + 1, actual + 100, 0xffff]);
        udp[4..6].copy_from_slice(&len.to_be_bytes());
        match self.rng.below(3) {
            // Checksum made for the lying length.
            0 => {
                udp[6] = 0;
                udp[7] = 0;
                let c = checksum(&[&pseudo(s, d, PROTO_UDP, udp.len()), &udp]);
                udp[6..8].copy_from_slice(&c.to_be_bytes());
            }
            // No checksum (not allowed over IPv6).
            1 => {
                udp[6] = 0;
                udp[7] = 0;
            }
            _ => {}
        }
        frame(self.dst_mac(), self.src_mac(), s, d, PROTO_UDP, &udp)
    }

    fn icmp_junk(&mut self) -> Vec<u8> {
        let v6 = self.rng.chance(50);
        let (s, mut d) = self.endpoints(v6);
        let n = self.rng.below(48);
        let mut msg = if v6 {
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
                    m.extend_from_slice(&target);
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
                if self.rng.chance(60) {
                    // ND messages must come with hop limit 255 to be looked at.
                    d = if ty == 135 {
                        // The server's solicited-node multicast address or the server.
                        let mut a = [0u8; 16];
                        a[..2].copy_from_slice(&[0xff, 0x02]);
                        a[11] = 1;
                        a[12] = 0xff;
                        a[13..].copy_from_slice(&self.server_v6[13..]);
                        Ip::V6(if self.rng.chance(50) {
                            a
                        } else {
                            self.server_v6
                        })
                    } else {
                        d
                    };
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
        if self.rng.chance(80) {
            let c = if v6 {
                checksum(&[&pseudo(s, d, proto, msg.len()), &msg])
            } else {
                checksum(&[&msg])
            };
            msg[2..4].copy_from_slice(&c.to_be_bytes());
        }
        if self.rng.chance(30) {
            let cut = self.rng.below(msg.len());
            msg.truncate(cut);
        }
        let mut f = frame(self.dst_mac(), self.src_mac(), s, d, proto, &msg);
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
                [255, 255, 255, 255],
                [224, 0, 0, 1],
                [0, 0, 0, 0],
                [127, 0, 0, 1],
                [10, 1, 2, 3],
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
        a.extend_from_slice(&sender);
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&target);
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

/// A well-formed ARP request from `sender` (MAC `mac`) for `target`, broadcast.
pub fn arp_request(mac: [u8; 6], sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = ethernet(BROADCAST, mac, ETH_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

/// A UDP datagram with a correct checksum.
pub fn udp_datagram(src: Ip, dst: Ip, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = checksum(&[&pseudo(src, dst, PROTO_UDP, len), &u]);
    let c = if c == 0 { 0xffff } else { c };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_ipv4_header() {
        // The example of RFC 1071's errata-free walk-through: a header whose sum is 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&h]), 0xb861);
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
            let mut kinds = [0usize; JUNK_KINDS.len()];
            for _ in 0..10_000 {
                let (kind, frame) = junk.next_frame();
                assert!(
                    (14..=MAX_FRAME).contains(&frame.len()),
                    "{} bytes",
                    frame.len()
                );
                kinds[kind] += 1;
            }
            assert!(kinds.iter().all(|&n| n == 10_000 / JUNK_KINDS.len()));
        }
    }

    #[test]
    fn smoltcp_parses_the_spoofed_syn_and_verifies_its_checksums() {
        use smolecho::smoltcp::wire::{
            EthernetFrame, IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket,
        };
        let v4 = [10, 69, 0, 1];
        let v6 = match Ip::parse("fdaa::1") {
            Ip::V6(a) => a,
            Ip::V4(_) => unreachable!(),
        };
        for n in [0u32, 1] {
            let f = spoofed_syn(n, v4, v6, 8000);
            let eth = EthernetFrame::new_checked(&f[..]).expect("ethernet");
            let (src, dst, seg): (IpAddress, IpAddress, &[u8]) = if n == 0 {
                let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
                assert!(ip.verify_checksum());
                (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
            } else {
                let ip = Ipv6Packet::new_checked(eth.payload()).expect("ipv6");
                (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
            };
            let tcp = TcpPacket::new_checked(seg).expect("tcp");
            assert!(tcp.verify_checksum(&src, &dst));
            assert!(tcp.syn() && !tcp.ack());
            assert_eq!(tcp.dst_port(), 8000);
        }
    }
}
