//! A deterministic in-memory network for tests (feature `sim`).
//!
//! A [`Link`] is an Ethernet cable between two ends, `A` and `B`. Each direction is a
//! [`Lane`]: a bounded queue of frames with its own MTU and its own seeded [`Faults`] (loss,
//! duplication, reordering, bit-flip corruption). [`Link::end`] lends one end as a smoltcp
//! `phy::Device`, so two interfaces (a server and its clients) can be polled in turn against
//! the same link with a manual clock.
//!
//! Nothing here allocates or reads the real clock, and every random choice comes from the
//! link's seed: the same seed and the same calls give the same packets, every run, so a
//! failing seed replays exactly.
//!
//! Frames that find the receiving queue full are dropped and counted, like a NIC ring.
//!
//! A lane may also [delay](Delay) its frames, each by its own random amount within a window,
//! so they arrive in another order than they left, as on a real link with queues of varying
//! depth. Time then comes from the `Instant`s that smoltcp passes to the device: a delayed
//! frame is received only once the receiver polls at or after its release time (see
//! [`Link::next_release`]).

use heapless::{Deque, Vec};
use smoltcp::iface::{Config, Interface};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

pub mod frames;

/// The largest frame the link carries: a 1500-byte MTU plus the Ethernet header.
pub const MAX_FRAME: usize = 1514;

/// The Ethernet header's length: MTUs count from after it.
const ETHERNET_HEADER: usize = 14;

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

/// Impairments of one direction, as chances per thousand frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// A frame is lost.
    pub loss: u16,
    /// A frame is delivered twice.
    pub duplicate: u16,
    /// A frame is held back and delivered after the next one (or when the lane goes idle).
    pub reorder: u16,
    /// One bit of the frame is flipped (checksums must catch it).
    pub corrupt: u16,
}

impl Faults {
    /// A perfect wire.
    pub const NONE: Self = Self {
        loss: 0,
        duplicate: 0,
        reorder: 0,
        corrupt: 0,
    };
}

/// Delay of one direction: each frame is released after a random time in `min..=max`
/// (uniform, from the link's seed) counted from when it finished leaving the sender. Frames
/// whose windows overlap overtake each other, so the reordering is as deep as the window is
/// wide compared to the time between frames.
///
/// `ns_per_byte` models the sender's line rate: frames leave one after another, each taking
/// `len * ns_per_byte` nanoseconds, instead of all at the instant they were sent (80 is
/// 100 Mbit/s, 8 is 1 Gbit/s, 0 an infinitely fast line). Without it a burst sent in one poll
/// would be shuffled as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delay {
    /// The shortest delay.
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Serialisation time per byte, in nanoseconds.
    pub ns_per_byte: u32,
}

/// A frame waiting on a delaying lane.
#[derive(Debug)]
struct Delayed {
    /// When the receiver may take it.
    at: Instant,
    /// Send order, so frames released at the same instant keep it.
    order: u64,
    frame: Frame,
}

/// What happened on the link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames delivered into a queue.
    pub frames: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Frames dropped because the receiving queue was full.
    pub overflowed: u64,
    /// Frames lost to [`Faults::loss`] or larger than the lane's MTU.
    pub lost: u64,
    /// Extra copies delivered by [`Faults::duplicate`].
    pub duplicated: u64,
    /// Frames delivered out of order by [`Faults::reorder`].
    pub reordered: u64,
    /// Frames with a bit flipped by [`Faults::corrupt`].
    pub corrupted: u64,
}

/// One direction of a link.
#[derive(Debug)]
pub struct Lane<const N: usize> {
    queue: Deque<Frame, N>,
    /// A frame held back for reordering.
    held: Option<Frame>,
    /// The sender's NIC transmit ring is "full": `transmit` offers no token.
    paused: bool,
    /// The largest IP packet this direction carries.
    mtu: usize,
    faults: Faults,
    /// `Some`: frames wait here for their release time instead of in `queue`.
    delay: Option<Delay>,
    delayed: Vec<Delayed, N>,
    /// The frame being received: a receive token borrows it, as a driver's token borrows
    /// its DMA buffer, so wrapping the token (as the node's gate does) moves no frame.
    receiving: Frame,
    /// Frames put on the delaying lane so far (their send order).
    sent: u64,
    /// When the sender's line is free again (with `Delay::ns_per_byte`), in nanoseconds.
    line_free_ns: i64,
}

impl<const N: usize> Lane<N> {
    const fn new() -> Self {
        Self {
            queue: Deque::new(),
            held: None,
            paused: false,
            mtu: MAX_FRAME - ETHERNET_HEADER,
            faults: Faults::NONE,
            delay: None,
            delayed: Vec::new(),
            receiving: Vec::new(),
            sent: 0,
            line_free_ns: 0,
        }
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.held.is_none() && self.delayed.is_empty()
    }

    /// Put a frame on this lane at `now`, through its faults.
    fn send(&mut self, frame: &[u8], now: Instant, rng: &mut Rng, stats: &mut LinkStats) {
        if frame.len() > self.mtu.saturating_add(ETHERNET_HEADER) || rng.chance(self.faults.loss) {
            stats.lost = stats.lost.wrapping_add(1);
            return;
        }
        let Ok(mut frame) = Frame::from_slice(frame) else {
            stats.lost = stats.lost.wrapping_add(1);
            return;
        };
        if rng.chance(self.faults.corrupt) && !frame.is_empty() {
            let bit = rng.below(frame.len().saturating_mul(8));
            if let Some(byte) = frame.get_mut(bit / 8) {
                *byte ^= 1 << (bit % 8);
                stats.corrupted = stats.corrupted.wrapping_add(1);
            }
        }
        let copies = if rng.chance(self.faults.duplicate) {
            stats.duplicated = stats.duplicated.wrapping_add(1);
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.held.is_none() && rng.chance(self.faults.reorder) {
                self.held = Some(frame.clone());
                continue;
            }
            self.admit(frame.clone(), now, rng, stats);
            if let Some(late) = self.held.take() {
                stats.reordered = stats.reordered.wrapping_add(1);
                self.admit(late, now, rng, stats);
            }
        }
    }

    /// Queue a frame that made it through the faults: at once, or after its delay.
    fn admit(&mut self, frame: Frame, now: Instant, rng: &mut Rng, stats: &mut LinkStats) {
        let Some(delay) = self.delay else {
            self.enqueue(frame, stats);
            return;
        };
        // The frame leaves once the line is free and all its bytes are out.
        let now_ns = now.total_micros().saturating_mul(1000);
        let wire_ns = i64::from(delay.ns_per_byte).saturating_mul(frame.len() as i64);
        let left_ns = now_ns.max(self.line_free_ns).saturating_add(wire_ns);
        self.line_free_ns = left_ns;
        let spread = delay
            .max
            .total_micros()
            .saturating_sub(delay.min.total_micros());
        let extra = rng.below(usize::try_from(spread).unwrap_or(0).saturating_add(1)) as u64;
        let at_us = (left_ns / 1000)
            .saturating_add(delay.min.total_micros() as i64)
            .saturating_add(extra as i64);
        let at = Instant::from_micros(at_us);
        let len = frame.len() as u64;
        let order = self.sent;
        self.sent = self.sent.wrapping_add(1);
        if self.delayed.push(Delayed { at, order, frame }).is_err() {
            stats.overflowed = stats.overflowed.wrapping_add(1);
            return;
        }
        stats.frames = stats.frames.wrapping_add(1);
        stats.bytes = stats.bytes.wrapping_add(len);
    }

    /// The earliest release time of a delayed frame.
    fn next_release(&self) -> Option<Instant> {
        self.delayed.iter().map(|d| d.at).min()
    }

    fn enqueue(&mut self, frame: Frame, stats: &mut LinkStats) {
        let len = frame.len() as u64;
        if self.queue.push_back(frame).is_err() {
            stats.overflowed = stats.overflowed.wrapping_add(1);
            return;
        }
        stats.frames = stats.frames.wrapping_add(1);
        stats.bytes = stats.bytes.wrapping_add(len);
    }

    /// The next frame for the receiver at `now`: the delayed frame released first (if any
    /// is due), else the queue's head; a held-back frame comes out once nothing else is left.
    fn receive(&mut self, now: Instant) -> Option<Frame> {
        let due = self
            .delayed
            .iter()
            .enumerate()
            .filter(|(_, d)| d.at <= now)
            .min_by_key(|(_, d)| (d.at, d.order))
            .map(|(i, _)| i);
        if let Some(i) = due {
            return Some(self.delayed.swap_remove(i).frame);
        }
        self.queue.pop_front().or_else(|| self.held.take())
    }
}

/// A small deterministic PRNG (xorshift64*), enough to schedule faults.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub const fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        match u64::try_from(n) {
            Ok(n) => usize::try_from(self.next_u64().checked_rem(n).unwrap_or(0)).unwrap_or(0),
            _ => 0,
        }
    }

    /// True with a chance of `per_mille` in a thousand.
    pub fn chance(&mut self, per_mille: u16) -> bool {
        per_mille > 0 && self.next_u64() % 1000 < u64::from(per_mille)
    }
}

/// A point-to-point Ethernet link holding up to `N` frames in each direction.
#[derive(Debug)]
pub struct Link<const N: usize> {
    to_a: Lane<N>,
    to_b: Lane<N>,
    rng: Rng,
    stats: LinkStats,
}

impl<const N: usize> Default for Link<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Link<N> {
    /// A perfect link.
    pub const fn new() -> Self {
        Self::seeded(0)
    }

    /// A perfect link whose fault schedule (once faults are set) follows `seed`.
    pub const fn seeded(seed: u64) -> Self {
        Self {
            to_a: Lane::new(),
            to_b: Lane::new(),
            rng: Rng::new(seed),
            stats: LinkStats {
                frames: 0,
                bytes: 0,
                overflowed: 0,
                lost: 0,
                duplicated: 0,
                reordered: 0,
                corrupted: 0,
            },
        }
    }

    /// Restart the fault schedule from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Rng::new(seed);
    }

    fn lane_mut(&mut self, towards: Side) -> &mut Lane<N> {
        match towards {
            Side::A => &mut self.to_a,
            Side::B => &mut self.to_b,
        }
    }

    /// Set the impairments of the direction towards `side`.
    pub fn set_faults(&mut self, towards: Side, faults: Faults) {
        self.lane_mut(towards).faults = faults;
    }

    /// Delay the frames of the direction towards `side` (`None`: deliver at once, the
    /// default). Frames already in flight keep their schedule.
    pub fn set_delay(&mut self, towards: Side, delay: Option<Delay>) {
        self.lane_mut(towards).delay = delay;
    }

    /// When the next delayed frame (in either direction) may be received; `None` when no
    /// frame is delayed. A driver whose clock jumps must not jump past it.
    pub fn next_release(&self) -> Option<Instant> {
        match (self.to_a.next_release(), self.to_b.next_release()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Clamp the MTU of the direction *from* `side`: that end's device reports it, so its
    /// stack never sends larger packets, and larger frames are lost. smoltcp reads a device's
    /// MTU when the interface is created: set it before.
    pub fn set_mtu(&mut self, from: Side, mtu: usize) {
        let mtu = mtu.min(MAX_FRAME - ETHERNET_HEADER);
        match from {
            Side::A => self.to_b.mtu = mtu,
            Side::B => self.to_a.mtu = mtu,
        }
    }

    /// Make `side`'s transmit ring look full (`true`) or drain again (`false`). While paused,
    /// smoltcp cannot dispatch from that side's sockets, so their transmit buffers fill up.
    pub fn pause_egress(&mut self, side: Side, paused: bool) {
        match side {
            Side::A => self.to_b.paused = paused,
            Side::B => self.to_a.paused = paused,
        }
    }

    /// Lend one end as a device.
    pub fn end(&mut self, side: Side) -> End<'_, N> {
        let (inbound, outbound) = match side {
            Side::A => (&mut self.to_a, &mut self.to_b),
            Side::B => (&mut self.to_b, &mut self.to_a),
        };
        End {
            inbound,
            outbound,
            rng: &mut self.rng,
            stats: &mut self.stats,
        }
    }

    /// Frames waiting for `side` to receive them.
    pub fn queued(&self, side: Side) -> usize {
        let lane = match side {
            Side::A => &self.to_a,
            Side::B => &self.to_b,
        };
        lane.queue
            .len()
            .saturating_add(lane.delayed.len())
            .saturating_add(usize::from(lane.held.is_some()))
    }

    /// Whether no frame is in flight in either direction.
    pub fn is_idle(&self) -> bool {
        self.to_a.is_idle() && self.to_b.is_idle()
    }

    /// What happened on the link so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Put a raw frame on the wire towards `side`, as if another host had sent it, past the
    /// lane's faults. Returns `false` when it did not fit.
    pub fn inject(&mut self, towards: Side, frame: &[u8]) -> bool {
        let before = self.stats.frames;
        let Ok(frame) = Frame::from_slice(frame) else {
            return false;
        };
        let lane = match towards {
            Side::A => &mut self.to_a,
            Side::B => &mut self.to_b,
        };
        lane.enqueue(frame, &mut self.stats);
        self.stats.frames != before
    }
}

/// One end of a [`Link`], as a smoltcp device.
#[derive(Debug)]
pub struct End<'l, const N: usize> {
    inbound: &'l mut Lane<N>,
    outbound: &'l mut Lane<N>,
    rng: &'l mut Rng,
    stats: &'l mut LinkStats,
}

impl<const N: usize> Device for End<'_, N> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, N>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.inbound.receiving = self.inbound.receive(timestamp)?;
        Some((
            RxToken(&self.inbound.receiving),
            TxToken {
                lane: self.outbound,
                now: timestamp,
                rng: self.rng,
                stats: self.stats,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.outbound.paused {
            return None;
        }
        Some(TxToken {
            lane: self.outbound,
            now: timestamp,
            rng: self.rng,
            stats: self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.outbound.mtu.saturating_add(ETHERNET_HEADER);
        caps
    }
}

/// A received frame, borrowed from its lane.
#[derive(Debug)]
pub struct RxToken<'l>(&'l [u8]);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

/// Room for one frame towards the other end.
#[derive(Debug)]
pub struct TxToken<'l, const N: usize> {
    lane: &'l mut Lane<N>,
    /// When the frame is sent (for a delaying lane).
    now: Instant,
    rng: &'l mut Rng,
    stats: &'l mut LinkStats,
}

impl<const N: usize> phy::TxToken for TxToken<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = [0u8; MAX_FRAME];
        let out = buf.get_mut(..len.min(MAX_FRAME)).unwrap_or(&mut []);
        let result = f(out);
        self.lane.send(out, self.now, self.rng, self.stats);
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

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec as StdVec;

    use super::*;
    use smoltcp::phy::{RxToken as _, TxToken as _};

    fn send(link: &mut Link<64>, from: Side, byte: u8) {
        let mut end = link.end(from);
        let token = end.transmit(Instant::ZERO).expect("not paused");
        token.consume(60, |buf| buf.fill(byte));
    }

    fn drain(link: &mut Link<64>, at: Side) -> StdVec<StdVec<u8>> {
        let mut out = StdVec::new();
        let mut end = link.end(at);
        while let Some((rx, _)) = end.receive(Instant::ZERO) {
            rx.consume(|f| out.push(f.to_vec()));
        }
        out
    }

    #[test]
    fn a_perfect_link_delivers_in_order() {
        let mut link = Link::<64>::new();
        for i in 0..10 {
            send(&mut link, Side::A, i);
        }
        let got = drain(&mut link, Side::B);
        assert_eq!(got.len(), 10);
        assert!(got.iter().enumerate().all(|(i, f)| f[0] == i as u8));
        assert!(link.is_idle());
    }

    #[test]
    fn faults_follow_the_seed_and_are_counted() {
        let faults = Faults {
            loss: 100,
            duplicate: 100,
            reorder: 100,
            corrupt: 100,
        };
        let run = |seed| {
            let mut link = Link::<64>::seeded(seed);
            link.set_faults(Side::B, faults);
            let mut got = StdVec::new();
            for i in 0..200u8 {
                send(&mut link, Side::A, i);
                got.extend(drain(&mut link, Side::B));
            }
            (got, link.stats())
        };
        let (a, stats) = run(7);
        assert_eq!(run(7).0, a, "same seed, same frames");
        assert_ne!(run(8).0, a, "another seed, another schedule");
        assert!(stats.lost > 0 && stats.duplicated > 0 && stats.reordered > 0);
        assert!(stats.corrupted > 0);
        assert_eq!(
            a.len() as u64,
            200 - stats.lost + stats.duplicated,
            "{stats:?}"
        );
        let corrupted = a.iter().filter(|f| f.iter().any(|&b| b != f[0])).count();
        assert!(corrupted > 0);
    }

    #[test]
    fn a_delaying_lane_releases_each_frame_in_its_window_and_reorders() {
        let delay = Delay {
            min: Duration::from_micros(200),
            max: Duration::from_micros(600),
            ns_per_byte: 8,
        };
        let run = |seed| {
            let mut link = Link::<64>::seeded(seed);
            link.set_delay(Side::B, Some(delay));
            for i in 0..40u8 {
                let mut end = link.end(Side::A);
                let at = Instant::from_micros(i64::from(i) * 10);
                end.transmit(at).unwrap().consume(60, |buf| buf.fill(i));
            }
            let mut got = StdVec::new();
            let mut now = Instant::ZERO;
            while !link.is_idle() {
                let mut end = link.end(Side::B);
                while let Some((rx, _)) = end.receive(now) {
                    rx.consume(|f| got.push((now, f[0])));
                }
                now += Duration::from_micros(10);
            }
            (got, link.stats())
        };
        let (got, stats) = run(3);
        assert_eq!(run(3).0, got, "same seed, same schedule");
        assert_eq!(got.len(), 40);
        assert_eq!(stats.frames, 40);
        let mut order: StdVec<u8> = got.iter().map(|g| g.1).collect();
        assert!(
            order.windows(2).any(|w| w[0] > w[1]),
            "reordered: {order:?}"
        );
        order.sort();
        assert_eq!(order, (0..40).collect::<StdVec<u8>>(), "nothing lost");
        for (at, i) in got {
            // Sent at 10 µs * i, 60 bytes at 8 ns/byte on a line that is never busy here.
            let sent = i64::from(i) * 10;
            let waited = at.total_micros() - sent;
            assert!((200..=611).contains(&waited), "frame {i} after {waited} µs");
        }
        // Nothing is received before its release.
        let mut link = Link::<64>::new();
        link.set_delay(Side::B, Some(delay));
        send(&mut link, Side::A, 1);
        assert_eq!(link.queued(Side::B), 1);
        assert!(
            link.end(Side::B)
                .receive(Instant::from_micros(199))
                .is_none()
        );
        assert!(link.next_release().unwrap() >= Instant::from_micros(200));
        assert!(
            link.end(Side::B)
                .receive(Instant::from_micros(600))
                .is_some()
        );
        assert!(link.is_idle());
    }

    #[test]
    fn the_mtu_clamp_is_reported_and_enforced_per_direction() {
        let mut link = Link::<64>::new();
        link.set_mtu(Side::A, 576);
        assert_eq!(link.end(Side::A).capabilities().max_transmission_unit, 590);
        assert_eq!(link.end(Side::B).capabilities().max_transmission_unit, 1514);
        let mut end = link.end(Side::A);
        let token = end.transmit(Instant::ZERO).unwrap();
        token.consume(600, |_| ());
        assert_eq!(link.stats().lost, 1);
        assert!(drain(&mut link, Side::B).is_empty());
    }
}
