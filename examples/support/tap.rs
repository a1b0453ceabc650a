//! A smoltcp `phy::Device` over a Linux TAP device (the `tun-tap` crate), and opening that
//! device: attach to an existing one, or create and configure it when allowed.
//!
//! - The descriptor is non-blocking: `receive` reads frames until the kernel has none left, so
//!   one `Interface::poll` drains everything that arrived while the process slept.
//! - One receive and one transmit buffer, sized from the interface MTU, are reused for every
//!   frame: nothing is allocated per packet.
//! - I/O errors are never panics: they are kept in an [`ErrorSlot`] that the poll loop checks
//!   after every poll, and end the program with a message.

use std::cell::RefCell;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::rc::Rc;

use smolecho::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smolecho::smoltcp::time::Instant;
use smolecho::smoltcp::wire::{IpAddress, IpCidr};
use tun_tap::{Iface, Mode};

/// Ethernet header bytes on top of the IP MTU.
const ETHERNET_HEADER: usize = 14;
/// Room for an 802.1Q tag the kernel may leave on a frame; larger frames would be truncated.
const SLACK: usize = 4;

/// The first I/O error the device met, shared with the poll loop.
pub type ErrorSlot = Rc<RefCell<Option<io::Error>>>;

/// Frame counters of the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounters {
    /// Frames read from the TAP.
    pub received: u64,
    /// Frames written to the TAP.
    pub sent: u64,
    /// Frames the kernel would not take right now (its queue was full); dropped, like a NIC
    /// with a full ring.
    pub tx_dropped: u64,
    /// Offload device only: frames received as one coalesced segment (GRO/TSO).
    pub rx_coalesced: u64,
    /// Offload device only: frames dropped for a wrong TCP or UDP checksum.
    pub rx_bad_checksum: u64,
    /// Offload device only: frames dropped because their checksum cannot be checked
    /// (lengths that do not fit, fragments).
    pub rx_unverifiable: u64,
    /// Offload device only: TCP segments handed to the kernel to segment.
    pub tx_segmented: u64,
    /// Offload device only: frames above the link MTU that are not TCP (dropped).
    pub tx_oversize: u64,
    /// Offload device only: the peer's pure ACKs from just past smoltcp's advertised window,
    /// moved back into it (smoltcp would drop them whole).
    pub rx_acks_rescued: u64,
}

/// A TAP device as a smoltcp device.
#[derive(Debug)]
pub struct TapDevice {
    iface: Iface,
    /// Largest Ethernet frame (interface MTU + Ethernet header).
    frame_mtu: usize,
    rx: Vec<u8>,
    tx: Vec<u8>,
    error: ErrorSlot,
    counters: Rc<RefCell<FrameCounters>>,
}

impl TapDevice {
    /// The interface's name as the kernel knows it.
    pub fn name(&self) -> &str {
        self.iface.name()
    }

    /// The IP MTU of the interface (what `ip link` shows).
    pub fn ip_mtu(&self) -> usize {
        self.frame_mtu - ETHERNET_HEADER
    }

    /// Where the device puts the first I/O error it meets.
    pub fn error_slot(&self) -> ErrorSlot {
        Rc::clone(&self.error)
    }

    /// The device's frame counters (shared: still readable once the device is wrapped).
    pub fn counters(&self) -> Rc<RefCell<FrameCounters>> {
        Rc::clone(&self.counters)
    }

    fn fail(&self, err: io::Error) {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(err);
        }
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.iface.as_raw_fd()
    }
}

impl Device for TapDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        loop {
            match self.iface.recv(&mut self.rx) {
                Ok(0) => return None,
                Ok(len) => {
                    self.counters.borrow_mut().received += 1;
                    let rx = RxToken {
                        frame: self.rx.get(..len)?,
                    };
                    let tx = TxToken {
                        iface: &self.iface,
                        buf: &mut self.tx,
                        error: &self.error,
                        counters: &self.counters,
                    };
                    return Some((rx, tx));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => {
                    self.fail(e);
                    return None;
                }
            }
        }
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            iface: &self.iface,
            buf: &mut self.tx,
            error: &self.error,
            counters: &self.counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.frame_mtu;
        caps
    }
}

/// A received frame, borrowed from the device's receive buffer (both TAP devices).
#[derive(Debug)]
pub struct RxToken<'a> {
    pub(super) frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Room for one frame to send, in the device's transmit buffer.
#[derive(Debug)]
pub struct TxToken<'a> {
    iface: &'a Iface,
    buf: &'a mut Vec<u8>,
    error: &'a ErrorSlot,
    counters: &'a Rc<RefCell<FrameCounters>>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if self.buf.len() < len {
            // smoltcp never builds frames above the MTU; grow rather than fail if it ever does.
            self.buf.resize(len, 0);
        }
        let frame = &mut self.buf[..len];
        let result = f(frame);
        loop {
            match self.iface.send(frame) {
                Ok(_) => self.counters.borrow_mut().sent += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.counters.borrow_mut().tx_dropped += 1
                }
                Err(e) => {
                    let mut slot = self.error.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(e);
                    }
                }
            }
            break;
        }
        result
    }
}

/// How the TAP was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// It existed (made with `ip tuntap add`); we attached to it.
    Attached,
    /// We created it, brought it up and gave the Linux side its addresses. It disappears when
    /// the program exits.
    Created,
}

/// Why the TAP could not be opened.
#[derive(Debug)]
pub enum TapError {
    /// The process may not create or attach to the device.
    Permission {
        /// The device name.
        name: String,
        /// Whether the device exists already.
        exists: bool,
        /// Whether `/dev/net/tun` itself could not be opened.
        tun_node: bool,
        /// The addresses the Linux side should have.
        host_ips: Vec<IpCidr>,
        /// The OS error.
        source: io::Error,
    },
    /// Anything else, with what was being done.
    Io {
        /// What failed.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for TapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TapError::Permission {
                name,
                exists,
                tun_node,
                host_ips,
                source,
            } => {
                if *tun_node {
                    writeln!(f, "cannot open /dev/net/tun: {source}.")?;
                    writeln!(
                        f,
                        "It must be readable and writable by you (crw-rw-rw- on most \
                         distributions; fix with: sudo chmod 0666 /dev/net/tun)."
                    )?;
                    writeln!(f, "The TAP device itself is set up once, as root:\n")?;
                    return write!(f, "{}", setup_commands(name, host_ips));
                } else if *exists {
                    writeln!(
                        f,
                        "cannot attach to TAP device {name}: {source}. It exists but belongs to \
                         another user."
                    )?;
                } else {
                    writeln!(
                        f,
                        "TAP device {name} does not exist, and creating it needs CAP_NET_ADMIN \
                         ({source})."
                    )?;
                }
                writeln!(
                    f,
                    "Create it once as root, owned by your user, then run this again without \
                     root:\n"
                )?;
                if *exists {
                    writeln!(f, "    sudo ip tuntap del dev {name} mode tap")?;
                }
                write!(f, "{}", setup_commands(name, host_ips))
            }
            TapError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for TapError {}

/// The one-time commands that make `name` usable by a normal user, as shell lines.
pub fn setup_commands(name: &str, host_ips: &[IpCidr]) -> String {
    let mut out = format!(
        "    sudo ip tuntap add dev {name} mode tap user $USER\n    sudo ip link set dev {name} up\n"
    );
    for cidr in host_ips {
        match cidr.address() {
            IpAddress::Ipv4(_) => {
                out.push_str(&format!("    sudo ip addr add {cidr} dev {name}\n"))
            }
            IpAddress::Ipv6(_) => {
                out.push_str(&format!("    sudo ip -6 addr add {cidr} dev {name}\n"))
            }
        }
    }
    out
}

fn is_permission(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::PermissionDenied
        || matches!(err.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// Open the TAP device `name`.
///
/// If it exists, attach to it (no privileges needed when it belongs to this user). If not,
/// create it (needs CAP_NET_ADMIN), bring it up, and give the Linux side `host_ips`.
pub fn open(name: &str, host_ips: &[IpCidr]) -> Result<(TapDevice, Origin), TapError> {
    let (iface, _, origin, ip_mtu) = open_with(name, host_ips, |name| {
        let iface = Iface::without_packet_info(name, Mode::Tap)?;
        iface.set_non_blocking()?;
        let actual = iface.name().to_string();
        Ok((iface, actual))
    })?;
    let frame_mtu = ip_mtu + ETHERNET_HEADER;
    let device = TapDevice {
        iface,
        frame_mtu,
        rx: vec![0; frame_mtu + SLACK],
        tx: vec![0; frame_mtu],
        error: Rc::new(RefCell::new(None)),
        counters: Rc::new(RefCell::new(FrameCounters::default())),
    };
    Ok((device, origin))
}

/// What both TAP devices share in opening one: tell the permission problems apart, attach
/// (`attach` opens the descriptor in its own way and returns it with the kernel's name for
/// the interface), configure a TAP we created, and read its MTU. Returns the descriptor,
/// the name, how it was obtained and the IP MTU.
pub fn open_with<T>(
    name: &str,
    host_ips: &[IpCidr],
    attach: impl FnOnce(&str) -> io::Result<(T, String)>,
) -> Result<(T, String, Origin, usize), TapError> {
    let exists = interface_exists(name);
    let permission = |source: io::Error, tun_node: bool| TapError::Permission {
        name: name.to_string(),
        exists,
        tun_node,
        host_ips: host_ips.to_vec(),
        source,
    };
    // Opening the clone device first tells "no access to /dev/net/tun" apart from "no
    // permission for this interface".
    if let Err(source) = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        return Err(if is_permission(&source) {
            permission(source, true)
        } else {
            TapError::Io {
                what: "cannot open /dev/net/tun (is the tun module loaded?)".into(),
                source,
            }
        });
    }
    let (handle, actual) = match attach(name) {
        Ok(opened) => opened,
        Err(source) if is_permission(&source) => return Err(permission(source, false)),
        Err(source) => {
            let what = if exists {
                format!(
                    "cannot attach to {name} (is it a TUN rather than a TAP, or held by another program?)"
                )
            } else {
                format!("cannot create TAP device {name}")
            };
            return Err(TapError::Io { what, source });
        }
    };
    let origin = if exists {
        Origin::Attached
    } else {
        configure_host_side(&actual, host_ips)?;
        Origin::Created
    };
    let ip_mtu = interface_mtu(&actual).map_err(|source| TapError::Io {
        what: format!("cannot read the MTU of {actual}"),
        source,
    })?;
    Ok((handle, actual, origin, ip_mtu))
}

/// Whether an interface called `name` exists in this network namespace.
pub fn interface_exists(name: &str) -> bool {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(cname.as_ptr()) != 0 }
}

/// Whether the interface is administratively up (`ip link set dev NAME up`).
pub fn is_up(name: &str) -> bool {
    ifreq_ioctl(name, libc::SIOCGIFFLAGS)
        // SAFETY: after a successful SIOCGIFFLAGS the union holds the flags.
        .map(|req| unsafe { req.ifr_ifru.ifru_flags } & libc::IFF_UP as libc::c_short != 0)
        .unwrap_or(false)
}

/// Bring a TAP we created up and give its Linux side addresses, with the `ip` tool.
fn configure_host_side(name: &str, host_ips: &[IpCidr]) -> Result<(), TapError> {
    run_ip(&["link", "set", "dev", name, "up"])?;
    for cidr in host_ips {
        let cidr = cidr.to_string();
        match cidr.contains(':') {
            // The TAP is a private link: skip duplicate address detection, so the address is
            // usable at once instead of after a second or two.
            true => run_ip(&["-6", "addr", "add", &cidr, "dev", name, "nodad"])?,
            false => run_ip(&["addr", "add", &cidr, "dev", name])?,
        }
    }
    Ok(())
}

fn run_ip(args: &[&str]) -> Result<(), TapError> {
    let shown = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| TapError::Io {
            what: format!("cannot run `{shown}` (is iproute2 installed?)"),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(TapError::Io {
        what: format!("`{shown}` failed"),
        source: io::Error::other(String::from_utf8_lossy(&output.stderr).trim().to_string()),
    })
}

/// The IP MTU of interface `name` (SIOCGIFMTU).
fn interface_mtu(name: &str) -> io::Result<usize> {
    let req = ifreq_ioctl(name, libc::SIOCGIFMTU)?;
    // SAFETY: after a successful SIOCGIFMTU the union holds the MTU.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    usize::try_from(mtu).map_err(|_| io::Error::other("negative MTU"))
}

/// Run an interface ioctl that reads into an `ifreq` (SIOCGIF*) for `name`, in this
/// process's network namespace (unlike /sys, which shows the namespace it was mounted in).
fn ifreq_ioctl(name: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    // SAFETY: a plain socket(2) call; the descriptor is closed below on every path.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1))
    {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIF* requests read the NUL-terminated name and write into the union of
    // `req`, which is a valid, exclusively borrowed ifreq.
    let rc = unsafe { libc::ioctl(sock, request, &mut req) };
    let result = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(req)
    };
    // SAFETY: `sock` is a descriptor we own and no longer use.
    unsafe { libc::close(sock) };
    result
}
