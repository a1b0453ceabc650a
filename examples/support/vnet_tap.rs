//! The offload TAP device (`--offload`): a smoltcp `phy::Device` over a TAP opened with
//! virtio-net headers (`IFF_VNET_HDR`) and the kernel's checksum and TCP segmentation
//! offloads (`TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)`).
//!
//! Why: through a plain TAP the kernel runs its whole receive path once per 1514-byte frame
//! inside `write()`. With offload, smoltcp hands over TCP segments of up to 64 KB that the
//! kernel segments (or, delivered locally or over a veth, never segments at all), and the
//! kernel hands over its coalesced (GRO) or unsegmented (TSO) segments the same way.
//!
//! What the device takes on, since smoltcp no longer does it (the frame work itself is pure
//! code in [`super::vnet`], unit-tested in `tests/vnet_frames.rs`):
//! - transmit: a `virtio_net_hdr` per frame; TCP checksums left partial (`NEEDS_CSUM`), large
//!   TCP segments segmented by the kernel (`GSO_TCPV4`/`GSO_TCPV6`);
//! - receive: frames marked `NEEDS_CSUM` or `DATA_VALID` came from the kernel's own memory or
//!   were checked there; every other TCP or UDP frame has its checksum checked here and is
//!   dropped when it is wrong (smoltcp would otherwise accept it);
//! - receive: a pure ACK from just past the window smoltcp advertised is moved back into it,
//!   since smoltcp 0.14 would drop it whole and can stall the echo for good (see
//!   [`vnet::AdvertisedWindows`]);
//! - `--drop-chance`/`--corrupt-chance` act here, on the wire side of the checksums, where a
//!   corruption is what a real link would do: smoltcp's `FaultInjector` above the device would
//!   corrupt frames before the checksums are completed or after they are checked.
//!
//! smoltcp 0.14 loses the segment size of IPv6 segments (its IPv6 dispatch neither passes
//! `PacketMeta` on nor sends packets above the MTU), so the device announces a 64 KiB MTU and
//! sizes IPv6 segments itself from the link MTU and the MSS the peer announced in its SYN.

use std::cell::RefCell;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use smolecho::smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium, PacketMeta};
use smolecho::smoltcp::time::Instant;
use smolecho::smoltcp::wire::IpCidr;

use super::tap::{self, ErrorSlot, FrameCounters, Origin, RxToken, TapError};
use super::vnet::{
    self, AdvertisedWindows, ETHERNET_HEADER, F_DATA_VALID, F_NEEDS_CSUM, GSO_NONE, HEADER_LEN,
    PeerMss, RxDrop, VnetHeader,
};

/// The largest frame smoltcp may build: IP packets up to 64 KiB. Frames above the link MTU
/// are only ever TCP segments for the kernel to segment; anything else that large is dropped.
const MAX_FRAME: usize = ETHERNET_HEADER + 65_535;
/// The largest TCP segment (with its Ethernet, IP and TCP headers) handed to the kernel.
const SEGMENT_FRAME: usize = 65_000;
/// Room for an 802.1Q tag the kernel may leave on a frame.
const SLACK: usize = 4;

/// A TAP with virtio-net headers and offloads, as a smoltcp device.
#[derive(Debug)]
pub struct VnetTapDevice {
    fd: OwnedFd,
    name: String,
    /// The interface's IP MTU: what one frame on the link may carry.
    link_ip_mtu: usize,
    rx: Vec<u8>,
    tx: Vec<u8>,
    peers: PeerMss,
    windows: AdvertisedWindows,
    faults: WireFaults,
    error: ErrorSlot,
    counters: Rc<RefCell<FrameCounters>>,
}

impl VnetTapDevice {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ip_mtu(&self) -> usize {
        self.link_ip_mtu
    }

    pub fn error_slot(&self) -> ErrorSlot {
        Rc::clone(&self.error)
    }

    pub fn counters(&self) -> Rc<RefCell<FrameCounters>> {
        Rc::clone(&self.counters)
    }

    /// Drop and corrupt this percentage of frames each way, on the wire side of the
    /// checksums (see the module docs).
    pub fn set_faults(&mut self, drop_pct: u8, corrupt_pct: u8, seed: u32) {
        self.faults = WireFaults {
            drop_pct,
            corrupt_pct,
            rng: seed | 1,
        };
    }
}

impl VnetTapDevice {
    /// Read frames until one passes the checks; returns its end in the receive buffer
    /// (`None`: nothing left to read, or an error, kept in the error slot).
    fn next_frame(&mut self) -> Option<usize> {
        loop {
            // SAFETY: reading into our own buffer, at most its length.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.rx.as_mut_ptr().cast(),
                    self.rx.len(),
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return None,
                    _ => {
                        let mut slot = self.error.borrow_mut();
                        if slot.is_none() {
                            *slot = Some(err);
                        }
                        return None;
                    }
                }
            }
            let n = n as usize;
            let Some(mut header) = VnetHeader::decode(&self.rx[..n]) else {
                continue;
            };
            let frame = &mut self.rx[HEADER_LEN..n];
            let mut counters = self.counters.borrow_mut();
            counters.received += 1;
            if header.gso_type != GSO_NONE {
                counters.rx_coalesced += 1;
            }
            if !self.faults.on_the_wire(&mut header, frame) {
                continue;
            }
            match vnet::check_received(&header, frame) {
                Ok(()) => {}
                Err(RxDrop::BadChecksum) => {
                    counters.rx_bad_checksum += 1;
                    continue;
                }
                Err(RxDrop::Unverifiable) => {
                    counters.rx_unverifiable += 1;
                    continue;
                }
            }
            self.peers.learn(frame);
            if self
                .windows
                .rescue_ack(frame, header.flags & F_NEEDS_CSUM != 0)
            {
                counters.rx_acks_rescued += 1;
            }
            return Some(n);
        }
    }
}

impl AsRawFd for VnetTapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Open the TAP `name` with virtio-net headers and offloads (creating it as
/// [`tap::open`] does when it does not exist).
pub fn open(name: &str, host_ips: &[IpCidr]) -> Result<(VnetTapDevice, Origin), TapError> {
    let (fd, actual, origin, link_ip_mtu) = tap::open_with(name, host_ips, attach)?;
    let device = VnetTapDevice {
        fd,
        name: actual,
        link_ip_mtu,
        rx: vec![0; HEADER_LEN + MAX_FRAME + SLACK],
        tx: vec![0; HEADER_LEN + MAX_FRAME],
        peers: PeerMss::default(),
        windows: AdvertisedWindows::default(),
        faults: WireFaults::default(),
        error: Rc::new(RefCell::new(None)),
        counters: Rc::new(RefCell::new(FrameCounters::default())),
    };
    Ok((device, origin))
}

/// `open("/dev/net/tun")`, `TUNSETIFF(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)`, then the header
/// size and byte order, and the offloads. Returns the descriptor and the interface's name.
fn attach(name: &str) -> io::Result<(OwnedFd, String)> {
    let path = c"/dev/net/tun";
    // SAFETY: a NUL-terminated path; the descriptor is owned by the OwnedFd below.
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1))
    {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads and writes the ifreq, a valid exclusive borrow.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let header_len = HEADER_LEN as libc::c_int;
    let little_endian: libc::c_int = 1;
    let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    // SAFETY: these ioctls read an int from the pointer (TUNSETOFFLOAD takes the flags as
    // the argument itself); the values outlive the calls.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &header_len) < 0
            || libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETLE, &little_endian) < 0
            || libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                offloads as libc::c_ulong,
            ) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    let actual: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((fd, String::from_utf8_lossy(&actual).into_owned()))
}

impl Device for VnetTapDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = self.next_frame()?;
        let rx = RxToken {
            frame: &self.rx[HEADER_LEN..len],
        };
        let tx = TxToken {
            fd: self.fd.as_raw_fd(),
            link_ip_mtu: self.link_ip_mtu,
            buf: &mut self.tx,
            peers: &self.peers,
            windows: &mut self.windows,
            faults: &mut self.faults,
            meta: PacketMeta::default(),
            error: &self.error,
            counters: &self.counters,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            fd: self.fd.as_raw_fd(),
            link_ip_mtu: self.link_ip_mtu,
            buf: &mut self.tx,
            peers: &self.peers,
            windows: &mut self.windows,
            faults: &mut self.faults,
            meta: PacketMeta::default(),
            error: &self.error,
            counters: &self.counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // See the module docs: only TCP segments are ever sent above the link MTU.
        caps.max_transmission_unit = MAX_FRAME;
        // TCP checksums: partial on transmit, checked here on receive. UDP: smoltcp still
        // computes them (echo datagrams are small), the device checks them on receive
        // (kernel-built datagrams arrive with partial ones). IPv4 header and ICMP checksums
        // stay with smoltcp both ways.
        caps.checksum.tcp = Checksum::None;
        caps.checksum.udp = Checksum::Tx;
        caps.segmentation.tcpv4 = NonZeroUsize::new(SEGMENT_FRAME);
        caps.segmentation.tcpv6 = NonZeroUsize::new(SEGMENT_FRAME);
        caps
    }
}

/// Room for one frame to send, after the header's room in the transmit buffer.
#[derive(Debug)]
pub struct TxToken<'a> {
    fd: RawFd,
    link_ip_mtu: usize,
    buf: &'a mut Vec<u8>,
    peers: &'a PeerMss,
    windows: &'a mut AdvertisedWindows,
    faults: &'a mut WireFaults,
    meta: PacketMeta,
    error: &'a ErrorSlot,
    counters: &'a Rc<RefCell<FrameCounters>>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if self.buf.len() < HEADER_LEN + len {
            self.buf.resize(HEADER_LEN + len, 0);
        }
        let (head, rest) = self.buf.split_at_mut(HEADER_LEN);
        let frame = &mut rest[..len];
        let result = f(frame);
        // What smoltcp advertises, whatever becomes of the frame on the wire.
        self.windows.sent(frame);
        let requested = self.meta.segmentation_offload_size.map(|size| size.get());
        // Only a frame above the link MTU needs the peer's MSS.
        let peer_mss = (len > ETHERNET_HEADER + self.link_ip_mtu)
            .then(|| self.peers.of_outgoing(frame))
            .flatten();
        let mut counters = self.counters.borrow_mut();
        let mut header = match vnet::transmit_header(frame, self.link_ip_mtu, requested, peer_mss) {
            Ok(header) => header,
            Err(_) => {
                counters.tx_oversize += 1;
                return result;
            }
        };
        if !self.faults.on_the_wire(&mut header, frame) {
            return result;
        }
        head.copy_from_slice(&header.encode());
        let whole = &self.buf[..HEADER_LEN + len];
        loop {
            // SAFETY: writing from our own buffer, its length.
            let n = unsafe { libc::write(self.fd, whole.as_ptr().cast(), whole.len()) };
            if n >= 0 {
                counters.sent += 1;
                if header.gso_type != GSO_NONE {
                    counters.tx_segmented += 1;
                }
                break;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                // The kernel's queue is full: dropped, like a NIC with a full ring.
                io::ErrorKind::WouldBlock => counters.tx_dropped += 1,
                _ => {
                    let mut slot = self.error.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(err);
                    }
                }
            }
            break;
        }
        result
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.meta = meta;
    }
}

/// Frame loss and corruption on the wire side of the device (`--drop-chance`,
/// `--corrupt-chance` with `--offload`), with smoltcp's `FaultInjector`'s odds and its single
/// bit flip.
#[derive(Debug, Clone, Copy, Default)]
struct WireFaults {
    drop_pct: u8,
    corrupt_pct: u8,
    rng: u32,
}

impl WireFaults {
    fn next(&mut self) -> u32 {
        // xorshift32
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    fn chance(&mut self, pct: u8) -> bool {
        pct > 0 && self.next() % 100 < u32::from(pct)
    }

    /// Whether the frame goes on (false: lost). A corrupted frame first gets the checksum a
    /// wire would carry: a partial one is completed and the offload flags are cleared, so the
    /// receiving side checks it. A segmentation request cannot be completed frame by frame;
    /// it is lost instead (its first damaged segment would be dropped).
    fn on_the_wire(&mut self, header: &mut VnetHeader, frame: &mut [u8]) -> bool {
        if self.chance(self.drop_pct) {
            return false;
        }
        if !self.chance(self.corrupt_pct) || frame.is_empty() {
            return true;
        }
        if header.gso_type != GSO_NONE && header.gso_size != 0 {
            return false;
        }
        if header.flags & F_NEEDS_CSUM != 0
            && !vnet::complete_checksum(
                frame,
                usize::from(header.csum_start),
                usize::from(header.csum_offset),
            )
        {
            return false;
        }
        header.flags &= !(F_NEEDS_CSUM | F_DATA_VALID);
        header.gso_type = GSO_NONE;
        let at = self.next() as usize % frame.len();
        let bit = 1u8 << (self.next() % 8);
        frame[at] ^= bit;
        true
    }
}
