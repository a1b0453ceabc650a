//! What the Linux TAP examples share: the TAP devices ([`tap`], the default, on the `tun-tap`
//! crate; [`vnet_tap`], `--offload`, with virtio-net headers and the kernel's offloads, its
//! frame work in [`vnet`]), the command line ([`cli`]), and the host glue below: a clock, the
//! stop signals, and sleeping on a file descriptor.
//!
//! None of this is part of the library: smolecho itself stays `no_std` and knows nothing of
//! Linux. Everything that touches the OS lives here.

// Each example uses its own part of the shared support code.
#![allow(dead_code)]

pub mod cli;
pub mod tap;
pub mod vnet;
pub mod vnet_tap;

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use smolecho::smoltcp::iface::{Config, Interface};
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// What the examples need of either TAP device besides smoltcp's `Device`.
pub trait Tap: smolecho::smoltcp::phy::Device + AsRawFd {
    /// The interface's name as the kernel knows it.
    fn name(&self) -> &str;
    /// The link's IP MTU (what `ip link` shows).
    fn ip_mtu(&self) -> usize;
    /// Where the device puts the first I/O error it meets.
    fn error_slot(&self) -> tap::ErrorSlot;
    /// The device's frame counters (shared: still readable once the device is wrapped).
    fn counters(&self) -> Rc<RefCell<tap::FrameCounters>>;
}

impl Tap for tap::TapDevice {
    fn name(&self) -> &str {
        tap::TapDevice::name(self)
    }
    fn ip_mtu(&self) -> usize {
        tap::TapDevice::ip_mtu(self)
    }
    fn error_slot(&self) -> tap::ErrorSlot {
        tap::TapDevice::error_slot(self)
    }
    fn counters(&self) -> Rc<RefCell<tap::FrameCounters>> {
        tap::TapDevice::counters(self)
    }
}

impl Tap for vnet_tap::VnetTapDevice {
    fn name(&self) -> &str {
        vnet_tap::VnetTapDevice::name(self)
    }
    fn ip_mtu(&self) -> usize {
        vnet_tap::VnetTapDevice::ip_mtu(self)
    }
    fn error_slot(&self) -> tap::ErrorSlot {
        vnet_tap::VnetTapDevice::error_slot(self)
    }
    fn counters(&self) -> Rc<RefCell<tap::FrameCounters>> {
        vnet_tap::VnetTapDevice::counters(self)
    }
}

/// A monotonic clock for smoltcp that reads as wall-clock time, so packet captures carry real
/// timestamps while TCP timers never see the system clock jump.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: std::time::Instant,
    epoch_micros: i64,
}

impl Clock {
    /// A clock that reads the current wall-clock time now.
    pub fn new() -> Self {
        let epoch_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(0))
            .unwrap_or(0);
        Self {
            start: std::time::Instant::now(),
            epoch_micros,
        }
    }

    /// The time now.
    pub fn now(&self) -> Instant {
        let since = i64::try_from(self.start.elapsed().as_micros()).unwrap_or(i64::MAX / 2);
        Instant::from_micros(self.epoch_micros.saturating_add(since))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

/// The signal mask to sleep with once the stop signals are blocked (see [`stop_on_signals`]).
static WAIT_MASK: OnceLock<libc::sigset_t> = OnceLock::new();

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Make SIGINT (Ctrl-C) and SIGTERM set the stop flag instead of killing the process.
///
/// The two signals are then blocked except while [`wait_readable`] sleeps (`ppoll` unblocks
/// them atomically), so a signal that arrives between the flag check and the sleep still
/// wakes the sleep instead of waiting for the next frame.
pub fn stop_on_signals() -> io::Result<()> {
    // SAFETY: sigset_t is plain data that sigemptyset/sigaddset initialise; the handler only
    // stores to an atomic (async-signal-safe) and is a plain function, valid for ever; the
    // masks passed to pthread_sigmask are valid for the call.
    unsafe {
        let mut stop: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut stop);
        for signal in [libc::SIGINT, libc::SIGTERM] {
            let handler = on_stop_signal as extern "C" fn(libc::c_int);
            if libc::signal(signal, handler as libc::sighandler_t) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            libc::sigaddset(&mut stop, signal);
        }
        let mut previous: libc::sigset_t = std::mem::zeroed();
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &stop, &mut previous);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let _ = WAIT_MASK.set(previous);
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleep until `fd` is readable, `timeout` passes (`None`: no limit) or a stop signal
/// arrives. Returns whether the descriptor is readable.
pub fn wait_readable(fd: RawFd, timeout: Option<Duration>) -> io::Result<bool> {
    let timespec = timeout.map(|d| {
        let micros = d.total_micros();
        libc::timespec {
            tv_sec: libc::time_t::try_from(micros / 1_000_000).unwrap_or(libc::time_t::MAX),
            tv_nsec: ((micros % 1_000_000) * 1000) as libc::c_long,
        }
    });
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts_ptr = timespec
        .as_ref()
        .map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
    let mask_ptr = WAIT_MASK
        .get()
        .map_or(std::ptr::null(), |m| m as *const libc::sigset_t);
    // SAFETY: `pfd` is a valid pollfd (count 1); the timeout and mask pointers are null or
    // point to values that outlive the call.
    let ready = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, mask_ptr) };
    if ready < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(err);
    }
    if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(io::Error::other(
            "the TAP device reported an error (POLLERR)",
        ));
    }
    Ok(ready > 0)
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long from `now` until `at` (zero when it passed), or `None` for no deadline.
pub fn delay_until(now: Instant, at: Option<Instant>) -> Option<Duration> {
    at.map(|at| if at > now { at - now } else { Duration::ZERO })
}

/// Leak `value` into a `'static` heap allocation (the examples run until the process exits).
/// An Ethernet interface on `device` with the given MAC, addresses and default routes.
pub fn interface<D: smolecho::smoltcp::phy::Device + ?Sized>(
    device: &mut D,
    mac: EthernetAddress,
    clock: &Clock,
    ips: &[IpCidr],
    gateways: &[IpAddress],
) -> Result<Interface, String> {
    let mut config = Config::new(mac.into());
    config.random_seed = clock.now().total_micros() as u64;
    let mut iface = Interface::new(config, device, clock.now());
    iface.update_ip_addrs(|addrs| {
        for cidr in ips {
            // The parser allows no more than the interface holds.
            let _ = addrs.push(*cidr);
        }
    });
    for gateway in gateways {
        let added = match *gateway {
            IpAddress::Ipv4(gw) => iface.routes_mut().add_default_ipv4_route(gw).map(|_| ()),
            IpAddress::Ipv6(gw) => iface.routes_mut().add_default_ipv6_route(gw).map(|_| ()),
        };
        added.map_err(|_| format!("cannot add the route via {gateway}"))?;
    }
    Ok(iface)
}

pub fn leak<T>(value: T) -> &'static mut T {
    Box::leak(Box::new(value))
}
