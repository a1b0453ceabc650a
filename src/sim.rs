//! A deterministic in-memory network for tests (feature `sim`).
//!
//! A [`Link`] is an Ethernet cable between two ends, `A` and `B`, each a bounded queue of
//! frames. [`Link::end`] lends one end as a smoltcp `phy::Device`, so two interfaces (a server
//! and its clients) can be polled in turn against the same link with a manual clock. Nothing
//! here allocates or reads the real clock: the same calls give the same packets, every run.
//!
//! Frames that find the receiving queue full are dropped and counted, like a NIC ring.

use heapless::{Deque, Vec};
use smoltcp::iface::{Config, Interface};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

/// The largest frame the link carries: a 1500-byte MTU plus the Ethernet header.
pub const MAX_FRAME: usize = 1514;

/// One frame on the wire.
pub type Frame = Vec<u8, MAX_FRAME>;

/// Which end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first end (by convention the server).
    A,
    /// The second end (by convention the clients).
    B,
}

/// What crossed the link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames delivered into a queue.
    pub frames: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Frames dropped because the receiving queue was full.
    pub overflowed: u64,
}

/// A point-to-point Ethernet link holding up to `N` frames in each direction.
#[derive(Debug)]
pub struct Link<const N: usize> {
    to_a: Deque<Frame, N>,
    to_b: Deque<Frame, N>,
    stats: LinkStats,
    /// Sides whose NIC transmit ring is "full": `transmit` offers no token.
    paused: [bool; 2],
}

impl<const N: usize> Default for Link<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Link<N> {
    /// An empty link.
    pub const fn new() -> Self {
        Self {
            to_a: Deque::new(),
            to_b: Deque::new(),
            stats: LinkStats {
                frames: 0,
                bytes: 0,
                overflowed: 0,
            },
            paused: [false; 2],
        }
    }

    /// Make `side`'s transmit ring look full (`true`) or drain again (`false`). While paused,
    /// smoltcp cannot dispatch from that side's sockets, so their transmit buffers fill up.
    pub fn pause_egress(&mut self, side: Side, paused: bool) {
        match side {
            Side::A => self.paused[0] = paused,
            Side::B => self.paused[1] = paused,
        }
    }

    /// Lend one end as a device.
    pub fn end(&mut self, side: Side) -> End<'_, N> {
        let (inbound, outbound, paused) = match side {
            Side::A => (&mut self.to_a, &mut self.to_b, self.paused[0]),
            Side::B => (&mut self.to_b, &mut self.to_a, self.paused[1]),
        };
        End {
            inbound,
            outbound,
            stats: &mut self.stats,
            paused,
        }
    }

    /// Frames waiting for `side` to receive them.
    pub fn queued(&self, side: Side) -> usize {
        match side {
            Side::A => self.to_a.len(),
            Side::B => self.to_b.len(),
        }
    }

    /// Whether no frame is in flight in either direction.
    pub fn is_idle(&self) -> bool {
        self.to_a.is_empty() && self.to_b.is_empty()
    }

    /// What crossed the link so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Put a raw frame on the wire towards `side`, as if another host had sent it.
    /// Returns `false` when it did not fit.
    pub fn inject(&mut self, side: Side, frame: &[u8]) -> bool {
        let queue = match side {
            Side::A => &mut self.to_a,
            Side::B => &mut self.to_b,
        };
        deliver(queue, &mut self.stats, frame)
    }
}

fn deliver<const N: usize>(
    queue: &mut Deque<Frame, N>,
    stats: &mut LinkStats,
    frame: &[u8],
) -> bool {
    let Ok(frame) = Frame::from_slice(frame) else {
        stats.overflowed = stats.overflowed.wrapping_add(1);
        return false;
    };
    let len = frame.len() as u64;
    if queue.push_back(frame).is_err() {
        stats.overflowed = stats.overflowed.wrapping_add(1);
        return false;
    }
    stats.frames = stats.frames.wrapping_add(1);
    stats.bytes = stats.bytes.wrapping_add(len);
    true
}

/// One end of a [`Link`], as a smoltcp device.
#[derive(Debug)]
pub struct End<'l, const N: usize> {
    inbound: &'l mut Deque<Frame, N>,
    outbound: &'l mut Deque<Frame, N>,
    stats: &'l mut LinkStats,
    paused: bool,
}

impl<const N: usize> Device for End<'_, N> {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, N>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.inbound.pop_front()?;
        Some((
            RxToken(frame),
            TxToken {
                queue: self.outbound,
                stats: self.stats,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.paused {
            return None;
        }
        Some(TxToken {
            queue: self.outbound,
            stats: self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps
    }
}

/// A received frame.
#[derive(Debug)]
pub struct RxToken(Frame);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room for one frame towards the other end.
#[derive(Debug)]
pub struct TxToken<'l, const N: usize> {
    queue: &'l mut Deque<Frame, N>,
    stats: &'l mut LinkStats,
}

impl<const N: usize> phy::TxToken for TxToken<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = [0u8; MAX_FRAME];
        let len = len.min(MAX_FRAME);
        let (out, result) = match buf.get_mut(..len) {
            Some(out) => {
                let result = f(out);
                (&*out, result)
            }
            None => (&[][..], f(&mut [])),
        };
        deliver(self.queue, self.stats, out);
        result
    }
}

/// An Ethernet interface on `device` with the given MAC (last byte) and addresses.
///
/// Addresses beyond smoltcp's limit (`iface-max-addr-count`) are ignored.
pub fn interface<D: Device + ?Sized>(
    device: &mut D,
    mac_last: u8,
    addrs: &[IpCidr],
    now: Instant,
) -> Interface {
    let mac = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, mac_last]);
    let mut config = Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed = u64::from(mac_last);
    let mut iface = Interface::new(config, device, now);
    iface.update_ip_addrs(|ips| {
        for addr in addrs {
            let _ = ips.push(*addr);
        }
    });
    iface
}
