//! The impaired link (issue 9): a user-space relay that bridges two interfaces of one network
//! namespace frame by frame with `AF_PACKET` sockets, and on the way loses, duplicates,
//! corrupts and delays frames, each direction on its own thread with its own seeded random
//! stream. This kernel has no `sch_netem`, so this is the test bed's netem.
//!
//! Used in-process by `tests/tap_impaired.rs` and as a program by `benches/impair_relay.rs`
//! (`benches/impaired.sh`); both include this file by path. Only ever run on interfaces of a namespace made for the run; the
//! namespace's kernel must own no address on them (the relay is a wire, not a router).
//!
//! What each impairment does, per frame, in this order (every random draw is made for every
//! frame, so frame `k` of a direction meets the same fate whatever happened before it: two
//! peers measured with one seed meet the same impairments):
//! - loss: the frame is dropped;
//! - corruption: one byte of the IPv4/IPv6 transport part (TCP, UDP with a checksum, ICMP)
//!   is XORed with a non-zero value, so the receiver's checksum must catch it; other frames
//!   (ARP, which nothing would catch) pass unharmed;
//! - duplication: the frame is sent twice;
//! - delay: each copy waits a uniform random time in `[delay_min, delay_max]` in a timer
//!   queue, so frames overtake each other (reordering without loss).
//!
//! Frames the kernel hands over with a partial checksum (`TP_STATUS_CSUMNOTREADY`: checksum
//! offload on the sending veth) get a full checksum first, since the receiver verifies every
//! one. Frames larger than the MTU (GSO/TSO left on at the sender) cannot go onto a TAP: they
//! are dropped and counted as `oversize`, which means the script forgot `ethtool -K`.

// Each includer uses a part (the test no command line, the program no frame helpers).
#![allow(dead_code)]

use std::collections::BinaryHeap;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Largest frame relayed: MTU 1500 plus the Ethernet header and one VLAN tag.
const MAX_FRAME: usize = 1518;
/// Receive buffer: room to see (and count) an oversize GSO frame instead of truncating it.
const RECV_BUF: usize = 65536 + 64;
/// Socket buffers, large so that a burst at several hundred Mbit/s is not lost in the kernel
/// (that loss would be impairment nobody asked for; it is still counted as `kernel_drops`).
const SOCKET_BUF: libc::c_int = 8 << 20;
/// Longest the relay sleeps without looking at its stop flag.
const POLL_CAP: Duration = Duration::from_millis(20);
/// Frames taken from the socket per wake-up before the timer queue is looked at again.
const BATCH: usize = 64;
pub const ETH_HDR: usize = 14;
const ETH_P_ALL: u16 = 0x0003;

/// What the link does to frames in one direction. Rates are in parts per million.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    pub loss_ppm: u32,
    pub dup_ppm: u32,
    pub corrupt_ppm: u32,
    pub delay_min: Duration,
    pub delay_max: Duration,
}

impl Impairment {
    /// The link profiles of issue 9 (the same in both directions):
    /// - `clean`: nothing;
    /// - `reorder`: 0.2-0.6 ms random delay per frame, no loss;
    /// - `loss2`: 2 % loss;
    /// - `mix`: 2 % loss, 1 % duplicates, 0.5 % corrupted, 0.2-0.6 ms random delay.
    pub fn profile(name: &str) -> Option<Self> {
        let reorder = Impairment {
            delay_min: Duration::from_micros(200),
            delay_max: Duration::from_micros(600),
            ..Default::default()
        };
        Some(match name {
            "clean" => Impairment::default(),
            "reorder" => reorder,
            "loss2" => Impairment {
                loss_ppm: 20_000,
                ..Default::default()
            },
            "mix" => Impairment {
                loss_ppm: 20_000,
                dup_ppm: 10_000,
                corrupt_ppm: 5_000,
                ..reorder
            },
            _ => return None,
        })
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |ppm: u32| f64::from(ppm) / 10_000.0;
        write!(
            f,
            "loss {}% dup {}% corrupt {}% delay {:.3}-{:.3} ms",
            pct(self.loss_ppm),
            pct(self.dup_ppm),
            pct(self.corrupt_ppm),
            self.delay_min.as_secs_f64() * 1e3,
            self.delay_max.as_secs_f64() * 1e3
        )
    }
}

/// What one direction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames taken from the source interface.
    pub received: u64,
    /// Frames written to the destination interface (duplicates included).
    pub passed: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    /// Frames whose partial checksum (checksum offload) the relay completed.
    pub csum_fixed: u64,
    /// Frames over `MAX_FRAME` (GSO/TSO at the sender), dropped.
    pub oversize: u64,
    /// Frames the destination refused (`send` failed after retries).
    pub send_failed: u64,
    /// Frames the kernel dropped before the relay read them (socket buffer full).
    pub kernel_drops: u64,
    /// The most any delayed frame left after its due time, in microseconds: the relay's own
    /// timing error (a loaded machine wakes it late).
    pub late_max_us: u64,
    /// Delayed frames that left more than 1 ms after their due time.
    pub late_over_1ms: u64,
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} passed={} dropped={} duplicated={} corrupted={} csum_fixed={} \
             oversize={} send_failed={} kernel_drops={} late_max_us={} late_over_1ms={}",
            self.received,
            self.passed,
            self.dropped,
            self.duplicated,
            self.corrupted,
            self.csum_fixed,
            self.oversize,
            self.send_failed,
            self.kernel_drops,
            self.late_max_us,
            self.late_over_1ms
        )
    }
}

/// A seeded random stream (splitmix64): deterministic, independent per direction.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    pub fn chance(&mut self, ppm: u32) -> bool {
        self.below(1_000_000) < u64::from(ppm)
    }
}

/// An `AF_PACKET` socket bound to one interface: receives every frame arriving there (not the
/// ones leaving), sends whole frames out of it.
struct Port {
    fd: OwnedFd,
    name: String,
}

fn check(rc: libc::c_int, what: &str, name: &str) -> io::Result<()> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{name}: {what}: {e}")));
    }
    Ok(())
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, value: &T) -> libc::c_int {
    // SAFETY: `value` is a valid `T` for the length given, and `fd` is an open socket.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (value as *const T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

impl Port {
    fn open(name: &str) -> io::Result<Self> {
        let cname = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("{name}: no such interface: {e}"),
            ));
        }
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(ETH_P_ALL.to_be()),
            )
        };
        check(raw, "socket(AF_PACKET)", name)?;
        // SAFETY: `raw` was just opened and is owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // Set before bind, so no frame of our own sending is ever queued to us.
        check(
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one),
            "PACKET_IGNORE_OUTGOING",
            name,
        )?;
        check(
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, &one),
            "PACKET_AUXDATA",
            name,
        )?;
        // Root only; fall back to the ordinary (capped) options without it.
        if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &SOCKET_BUF) < 0 {
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &SOCKET_BUF);
        }
        if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &SOCKET_BUF) < 0 {
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &SOCKET_BUF);
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = index as libc::c_int;
        // SAFETY: `addr` is a valid sockaddr_ll and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check(rc, "bind", name)?;
        // Promiscuous: the frames crossing are addressed to the far side's MAC, not this one's.
        // SAFETY: packet_mreq is plain data; all-zero is a valid start.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = index as libc::c_int;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        check(
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq),
            "PACKET_MR_PROMISC",
            name,
        )?;
        Ok(Port {
            fd,
            name: name.to_string(),
        })
    }

    /// Wait until a frame is readable or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    }

    /// One frame without blocking: its length (possibly more than `buf` holds: truncated) and
    /// whether its checksum is partial; `None` when nothing is queued.
    fn recv(&self, buf: &mut [u8]) -> Option<(usize, bool)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast::<libc::c_void>(),
            iov_len: buf.len(),
        };
        // u64s: the control buffer must be aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: msghdr is plain data; all-zero is a valid start.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` points at `iov` (valid for `buf`) and `control`, both alive here.
        let n = unsafe {
            libc::recvmsg(
                self.fd.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        let len = usize::try_from(n).ok()?;
        let mut partial = false;
        // SAFETY: walking the control messages the kernel just wrote into `msg`.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux = std::ptr::read_unaligned(
                        libc::CMSG_DATA(c).cast::<libc::tpacket_auxdata>(),
                    );
                    partial = aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Some((len, partial))
    }

    /// Send one frame; a full queue (`ENOBUFS`, `EAGAIN`) is retried briefly. False: refused.
    fn send(&self, frame: &[u8]) -> bool {
        for _ in 0..10 {
            // SAFETY: `frame` is valid for its length; the socket is bound to the interface.
            let rc = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast::<libc::c_void>(),
                    frame.len(),
                    0,
                )
            };
            if rc >= 0 {
                return true;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                    thread::sleep(Duration::from_micros(50))
                }
                _ => return false,
            }
        }
        false
    }

    /// Frames the kernel dropped for this socket since the last call.
    fn kernel_drops(&self) -> u64 {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `stats` is valid for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc < 0 { 0 } else { u64::from(stats.tp_drops) }
    }
}

// ---------------------------------------------------------------------------------------------
// Frame surgery: where the transport part is, and checksums
// ---------------------------------------------------------------------------------------------

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// The transport part of an IPv4/IPv6 frame: (protocol, start, end, pseudo-header sum),
/// when the frame holds a whole, unfragmented one.
pub fn transport(frame: &[u8]) -> Option<(u8, usize, usize, u32)> {
    if frame.len() < ETH_HDR + 20 {
        return None;
    }
    let sum_words = |bytes: &[u8]| -> u32 {
        bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum()
    };
    match be16(frame, 12) {
        0x0800 => {
            let ip = &frame[ETH_HDR..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = be16(ip, 2);
            let fragmented = be16(ip, 6) & 0x3fff != 0;
            if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || fragmented {
                return None;
            }
            let proto = ip[9];
            let len = total - ihl;
            let pseudo = sum_words(&ip[12..20]) + u32::from(proto) + len as u32;
            Some((proto, ETH_HDR + ihl, ETH_HDR + total, pseudo))
        }
        0x86dd => {
            let ip = &frame[ETH_HDR..];
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            let len = be16(ip, 4);
            if 40 + len > ip.len() {
                return None;
            }
            let proto = ip[6];
            let pseudo = sum_words(&ip[8..40]) + len as u32 + u32::from(proto);
            Some((proto, ETH_HDR + 40, ETH_HDR + 40 + len, pseudo))
        }
        _ => None,
    }
}

/// Offset of the checksum field inside the transport header.
fn checksum_field(proto: u8, ipv6: bool) -> Option<usize> {
    match proto {
        6 => Some(16),
        17 => Some(6),
        58 if ipv6 => Some(2),
        1 if !ipv6 => Some(2),
        _ => None,
    }
}

/// Fill in the full transport checksum of a frame whose checksum was left partial.
pub fn complete_checksum(frame: &mut [u8]) -> bool {
    let Some((proto, start, end, pseudo)) = transport(frame) else {
        return false;
    };
    let ipv6 = be16(frame, 12) == 0x86dd;
    let Some(field) = checksum_field(proto, ipv6) else {
        return false;
    };
    if start + field + 2 > end {
        return false;
    }
    frame[start + field] = 0;
    frame[start + field + 1] = 0;
    // ICMPv4 has no pseudo-header.
    let mut sum: u64 = if proto == 1 { 0 } else { u64::from(pseudo) };
    for c in frame[start..end].chunks(2) {
        sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut csum = !(sum as u16);
    if proto == 17 && csum == 0 {
        csum = 0xffff;
    }
    frame[start + field..start + field + 2].copy_from_slice(&csum.to_be_bytes());
    true
}

/// Where a corruption is caught by a checksum: the transport part of a TCP, ICMP or
/// checksummed UDP frame. `None` for anything else.
pub fn corruptible(frame: &[u8]) -> Option<(usize, usize)> {
    let (proto, start, end, _) = transport(frame)?;
    let ipv6 = be16(frame, 12) == 0x86dd;
    let field = checksum_field(proto, ipv6)?;
    if start + field + 2 > end {
        return None;
    }
    // An IPv4 UDP checksum of zero means "none": nothing would catch a flipped byte.
    if proto == 17 && !ipv6 && frame[start + 6] == 0 && frame[start + 7] == 0 {
        return None;
    }
    Some((start, end))
}

// ---------------------------------------------------------------------------------------------
// One direction
// ---------------------------------------------------------------------------------------------

/// A frame waiting in the timer queue (a min-heap on `due`, then arrival order).
struct Pending {
    due: Instant,
    seq: u64,
    frame: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: BinaryHeap is a max-heap, the earliest due frame must come out first.
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

fn run_direction(
    from: &Port,
    to: &Port,
    imp: Impairment,
    seed: u64,
    stop: &AtomicBool,
) -> Counters {
    // Tight wake-ups: the default 50 us timer slack would blur a 0.2 ms delay.
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
    // A wire does not wait for the CPU: on a loaded machine an ordinary thread wakes
    // milliseconds late, which would add delay nobody asked for. A real-time priority (root
    // only; without it the relay runs as it is) makes it wake on time; it sleeps between
    // frames, and the kernel keeps 5 % of each CPU for others (sched_rt_runtime_us).
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    let mut rng = Rng(seed);
    let mut c = Counters::default();
    let mut queue: BinaryHeap<Pending> = BinaryHeap::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; RECV_BUF];
    let spread = imp.delay_max.saturating_sub(imp.delay_min).as_nanos() as u64;
    let delayed = !imp.delay_max.is_zero();
    from.kernel_drops(); // reset the kernel's counter
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.peek().is_some_and(|p| p.due <= now) {
            let Some(p) = queue.pop() else { break };
            let late = now.saturating_duration_since(p.due);
            let late_us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
            c.late_max_us = c.late_max_us.max(late_us);
            c.late_over_1ms += u64::from(late_us > 1000);
            if to.send(&p.frame) {
                c.passed += 1;
            } else {
                c.send_failed += 1;
            }
            spare.push(p.frame);
        }
        let wait = queue
            .peek()
            .map_or(POLL_CAP, |p| p.due.saturating_duration_since(now))
            .min(POLL_CAP);
        if !wait.is_zero() {
            from.wait(wait);
        }
        for _ in 0..BATCH {
            let Some((len, partial)) = from.recv(&mut buf) else {
                break;
            };
            c.received += 1;
            // Every draw for every frame, whatever the outcome (see the module docs).
            let lose = rng.chance(imp.loss_ppm);
            let corrupt = rng.chance(imp.corrupt_ppm);
            let duplicate = rng.chance(imp.dup_ppm);
            let corrupt_at = rng.next();
            let corrupt_xor = (rng.below(255) + 1) as u8;
            let delays = [rng.below(spread), rng.below(spread)];
            if len > MAX_FRAME || len > buf.len() {
                c.oversize += 1;
                continue;
            }
            let frame = &mut buf[..len];
            if partial && complete_checksum(frame) {
                c.csum_fixed += 1;
            }
            if lose {
                c.dropped += 1;
                continue;
            }
            if corrupt && let Some((start, end)) = corruptible(frame) {
                let at = start + (corrupt_at % (end - start) as u64) as usize;
                frame[at] ^= corrupt_xor;
                c.corrupted += 1;
            }
            let copies = if duplicate {
                c.duplicated += 1;
                2
            } else {
                1
            };
            for delay in delays.iter().take(copies) {
                if !delayed {
                    if to.send(frame) {
                        c.passed += 1;
                    } else {
                        c.send_failed += 1;
                    }
                    continue;
                }
                let mut copy = spare.pop().unwrap_or_default();
                copy.clear();
                copy.extend_from_slice(frame);
                seq += 1;
                queue.push(Pending {
                    due: Instant::now() + imp.delay_min + Duration::from_nanos(*delay),
                    seq,
                    frame: copy,
                });
            }
        }
    }
    c.kernel_drops = from.kernel_drops();
    c
}

/// A running relay between interfaces `a` and `b`. Stop it with [`Relay::stop`] (dropping
/// it stops it too).
pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Counters>>,
}

/// Counters of both directions, `a` to `b` first.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    pub a_to_b: Counters,
    pub b_to_a: Counters,
}

impl Relay {
    /// Bridge `a` and `b` (interfaces of this namespace, up), impairing both directions with
    /// `imp`, each direction's random stream derived from `seed`.
    pub fn start(a: &str, b: &str, imp: Impairment, seed: u64) -> io::Result<Self> {
        let pa = Arc::new(Port::open(a)?);
        let pb = Arc::new(Port::open(b)?);
        // Anything queued before the relay was ready (a frame from the previous relay's time).
        let mut scratch = vec![0u8; RECV_BUF];
        for port in [&pa, &pb] {
            while port.recv(&mut scratch).is_some() {}
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (dir, (from, to)) in [(&pa, &pb), (&pb, &pa)].into_iter().enumerate() {
            let (from, to, stop) = (Arc::clone(from), Arc::clone(to), Arc::clone(&stop));
            // Distinct, seed-derived streams per direction.
            let dir_seed = Rng(seed ^ (dir as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F)).next();
            let name = format!("relay {}->{}", from.name, to.name);
            threads.push(
                thread::Builder::new()
                    .name(name)
                    .spawn(move || run_direction(&from, &to, imp, dir_seed, &stop))?,
            );
        }
        Ok(Relay { stop, threads })
    }

    /// Stop both directions and return what they did.
    pub fn stop(mut self) -> Report {
        self.halt()
    }

    fn halt(&mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = self.threads.drain(..).map(|t| t.join().unwrap_or_default());
        Report {
            a_to_b: out.next().unwrap_or_default(),
            b_to_a: out.next().unwrap_or_default(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Report {
    /// One line per direction, `relay A->B: received=...`.
    pub fn lines(&self, a: &str, b: &str) -> String {
        format!(
            "relay {a}->{b}: {}\nrelay {b}->{a}: {}",
            self.a_to_b, self.b_to_a
        )
    }
}
