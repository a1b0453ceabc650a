//! Admission: which SYN gets a slot, which waits, and which slot is taken back.
//!
//! A fixed pool of slots can be exhausted by accident (more clients than slots) or on purpose
//! (a SYN flood, connections that are opened and never used). [`Admission`] looks at every
//! initial SYN to the service port before smoltcp does (see [`wire`](crate::wire)) and
//! answers it with a [`Verdict`]. Everything else passes untouched. Its rules:
//!
//! - **A free listener** takes the SYN.
//! - **A SYN from a peer that already has a slot** (its retransmission, because our SYN-ACK
//!   or its ACK was lost, or a copy a link duplicated) is kept away from the listeners:
//!   smoltcp would open a second connection for the same peer on another slot, and whichever
//!   of the two sees the peer's next segment first answers the other connection's numbers
//!   with an RST. The slots are served after every SYN a listener takes, so that slot knows
//!   its peer before the next frame. A retransmission also proves that the half-open slot
//!   belongs to a real, answering host.
//! - **No listener, Overflow::Defer**: the SYN is held, like a full Linux listen backlog, and
//!   with a backlog a copy is kept and replayed, oldest first, as soon as a slot frees.
//! - **No listener, a slot can be taken back** ([`Verdict::Take`]):
//!   - *SYN flood.* None free and at least half of the slots half-open, each for
//!     [`SYN_PRESSURE_AFTER`] already: the oldest half-open slot whose peer never
//!     showed a sign of life is recycled, without an RST. A lossy link does not look like
//!     this: a lost SYN-ACK or ACK leaves one handshake waiting for a retransmission, not
//!     half of the pool, and its client's SYN retransmission proves it real.
//!   - *Idle holders.* A connection that has not sent a byte [`IDLE_HOLDER_AFTER`] after its
//!     handshake loses its slot (with an RST) to a client that is waiting.
//!
//!   A slot taken back, or freed by an idle holder's own idle timeout, goes to the *newest*
//!   waiting client: whoever filled the pool with idle connections queued before it, so a
//!   first-in-first-out queue would hand the slot back to the same crowd while a new client
//!   waits. Any other slot that frees goes to the oldest waiting client, as in a listen
//!   backlog.
//!
//! The state is private: the node tells it the clock and the slots before each frame, and
//! carries out its verdicts.

use managed::ManagedSlice;
#[cfg(test)]
use smoltcp::phy::Medium;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

use crate::conn::{Phase, elapsed, later};
use crate::counters::bump;
use crate::tcp_server::TcpSlot;
#[cfg(test)]
use crate::wire::tcp_in_frame;
use crate::wire::{MAX_SYN_FRAME, TcpInFrame, syn_source};

/// Half of the pool half-open for this long, none free, means a SYN flood.
pub(crate) const SYN_PRESSURE_AFTER: Duration = Duration::from_millis(250);

/// How long the SYN-flood defence stays on after the flood's shape was last seen.
pub(crate) const SYN_PRESSURE_HOLD: Duration = Duration::from_secs(10);

/// The longest a half-open connection lives under SYN pressure, instead of the configured
/// handshake timeout. Stale half-open slots each keep asking smoltcp to resolve their
/// (absent) peer, and smoltcp sends one neighbour request a second for the whole interface.
pub(crate) const SYN_PRESSURE_HANDSHAKE: Duration = Duration::from_secs(1);

/// A connection that has not sent a byte this long after its handshake may lose its slot to
/// a waiting client. Echo clients send at once, but on a lossy link their first segment can
/// be lost and retransmitted more than once: after 0.2 s, 0.6 s, 1.4 s and 3 s for Linux,
/// after 1 s and 3 s for smoltcp (whose minimum RTO is 1 s). 3 s spares a real client its
/// slot unless four (Linux) or two (smoltcp) copies of its first segment are lost.
pub(crate) const IDLE_HOLDER_AFTER: Duration = Duration::from_secs(3);

/// How long a SYN waits in the backlog without a retransmission before it is forgotten. The
/// client has retransmitted by then (after 1 s, then 3 s on Linux).
pub(crate) const BACKLOG_MAX_AGE: Duration = Duration::from_secs(3);

/// One place in the listen backlog: a SYN held back while every slot was busy.
///
/// Give the node a slice of them (`[HeldSyn::EMPTY; N]`) to keep up to `N` waiting clients,
/// about 180 bytes each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSyn {
    /// Who sent it; port 0 marks a free place.
    source: IpEndpoint,
    /// When the client's first SYN arrived: its place in the queue.
    first: Instant,
    /// When its latest retransmission arrived: its freshness.
    last: Instant,
    /// The latest frame as received.
    frame: heapless::Vec<u8, MAX_SYN_FRAME>,
}

impl HeldSyn {
    /// A free place.
    pub const EMPTY: Self = Self {
        source: IpEndpoint {
            addr: IpAddress::Ipv4(Ipv4Address::UNSPECIFIED),
            port: 0,
        },
        first: Instant::ZERO,
        last: Instant::ZERO,
        frame: heapless::Vec::new(),
    };

    fn is_free(&self) -> bool {
        self.frame.is_empty()
    }

    /// Keep `frame` (at most `MAX_SYN_FRAME` bytes), received `now`.
    fn hold(&mut self, now: Instant, frame: &[u8]) {
        self.last = now;
        self.frame.clear();
        // Fits: the caller checked its length.
        let _ = self.frame.extend_from_slice(frame);
    }

    /// The frame to hand to the interface.
    pub(crate) fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Who sent it.
    pub(crate) fn source(&self) -> IpEndpoint {
        self.source
    }
}

impl Default for HeldSyn {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// What to do with one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand it to smoltcp.
    Pass,
    /// Hand it to smoltcp: an initial SYN for a free listener. The slots must be served
    /// before the next frame, so the slot it lands on knows its peer and a copy of the same
    /// SYN (a duplicate, or a quick retransmission) is kept from a second listener.
    Admit,
    /// Drop it silently (a held SYN: its client retransmits).
    Hold,
    /// Drop it for now: a slot must be taken back ([`Admission::victim`]) for the waiting
    /// client that [`Admission::next_waiter`] names.
    Take,
}

/// How a slot is taken back, in the order the policy prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reclaim {
    /// A half-open connection, forgotten without an RST (SYN flood).
    Recycle,
    /// An idle holder, aborted with an RST.
    Evict,
}

/// The admission policy and its state; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    port: u16,
    defer: bool,
    /// Waiting clients (Overflow::Defer).
    backlog: ManagedSlice<'a, HeldSyn>,
    /// Without a backlog, the one place for the SYN a slot is being taken back for.
    taker: HeldSyn,
    /// Listeners not yet promised to a SYN since the slots were last counted.
    listeners: usize,
    /// Occupied places (in the backlog, or the taker's).
    waiting: usize,
    /// No slot could be taken back at the last look since the slots were counted.
    no_victim: bool,
    /// Until when half-open slots may be recycled for new SYNs.
    pressure_until: Option<Instant>,
    now: Instant,
    held: u64,
    refused: u64,
}

impl<'a> Admission<'a> {
    /// A policy for SYNs to `port`, holding (`defer`) or refusing what finds no slot.
    pub(crate) fn new(port: u16, defer: bool, backlog: ManagedSlice<'a, HeldSyn>) -> Self {
        let mut admission = Self {
            port,
            defer,
            backlog,
            taker: HeldSyn::EMPTY,
            listeners: 0,
            waiting: 0,
            no_victim: false,
            pressure_until: None,
            now: Instant::ZERO,
            held: 0,
            refused: 0,
        };
        admission
            .backlog
            .iter_mut()
            .for_each(|h| *h = HeldSyn::EMPTY);
        admission
    }

    /// The service port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The clock of the last count of the slots.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// SYNs held back so far.
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// SYNs passed to smoltcp to be refused (Overflow::Refuse) so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }

    /// Look at the slots again (after they were served): count the listeners, watch for the
    /// shape of a SYN flood, forget stale waiters.
    pub(crate) fn recount(&mut self, now: Instant, slots: &[TcpSlot]) {
        self.now = now;
        let mut listeners = 0usize;
        let mut free = 0usize;
        let mut unproven = 0usize;
        let mut stale = 0usize;
        for slot in slots {
            match slot.conn().phase() {
                Phase::Listening => {
                    listeners = listeners.saturating_add(1);
                    free = free.saturating_add(1);
                }
                Phase::Unbound => free = free.saturating_add(1),
                Phase::HalfOpen { since } if !slot.proven() => {
                    unproven = unproven.saturating_add(1);
                    if elapsed(since, now) >= SYN_PRESSURE_AFTER {
                        stale = stale.saturating_add(1);
                    }
                }
                _ => {}
            }
        }
        self.listeners = listeners;
        self.no_victim = false;
        // A flood starts when half of the pool has waited SYN_PRESSURE_AFTER for peers that
        // never answered; handshakes just begun do not count (a listen backlog replays many
        // SYNs at once, and on a lossy link one of them may be slow). Once on, the defence
        // lasts while half of the pool is half-open and unanswered, however young: recycled
        // slots refill with fresh spoofed SYNs.
        let half = |n: usize| n > 0 && n.saturating_mul(2) >= slots.len();
        let flood_shape = free == 0
            && if self.under_pressure(now) {
                half(unproven)
            } else {
                half(stale)
            };
        if flood_shape {
            self.pressure_until = Some(later(now, SYN_PRESSURE_HOLD));
        }
        if self.pressure_until.is_some_and(|until| now >= until) {
            self.pressure_until = None;
        }
        if self.waiting > 0 {
            for entry in places(&mut self.backlog, &mut self.taker) {
                if !entry.is_free() && elapsed(entry.last, now) >= BACKLOG_MAX_AGE {
                    // Only the frame marks a place taken.
                    entry.frame.clear();
                    self.waiting = self.waiting.saturating_sub(1);
                }
            }
        }
    }

    /// Whether the SYN-flood defence is on.
    pub(crate) fn under_pressure(&self, now: Instant) -> bool {
        self.pressure_until.is_some_and(|until| now < until)
    }

    /// The handshake limit in force: shortened under SYN pressure.
    pub(crate) fn handshake_limit(
        &self,
        now: Instant,
        configured: Option<Duration>,
    ) -> Option<Duration> {
        if !self.under_pressure(now) {
            return configured;
        }
        Some(match configured {
            Some(limit) if limit < SYN_PRESSURE_HANDSHAKE => limit,
            _ => SYN_PRESSURE_HANDSHAKE,
        })
    }

    /// When the policy needs a poll without network activity: the end of SYN pressure.
    pub(crate) fn poll_at(&self) -> Option<Instant> {
        self.pressure_until
    }

    /// Judge one received frame (unit tests; the node parses each frame once for all).
    #[cfg(test)]
    pub(crate) fn judge(&mut self, medium: Medium, frame: &[u8], slots: &mut [TcpSlot]) -> Verdict {
        self.judge_parsed(tcp_in_frame(medium, frame).as_ref(), frame, slots)
    }

    /// Judge one received frame, whose TCP segment (if any) is already found.
    #[inline]
    pub(crate) fn judge_parsed(
        &mut self,
        tcp: Option<&TcpInFrame>,
        frame: &[u8],
        slots: &mut [TcpSlot],
    ) -> Verdict {
        let Some(source) = syn_source(tcp, frame, self.port) else {
            return Verdict::Pass;
        };
        if let Some(slot) = slots.iter_mut().find(|s| s.peer() == Some(source)) {
            slot.prove();
            return Verdict::Hold;
        }
        if self.listeners > 0 {
            self.listeners = self.listeners.saturating_sub(1);
            return Verdict::Admit;
        }
        if self.victim(slots).is_some() {
            // In the backlog, or in the taker's place without one.
            self.keep(source, frame);
            return Verdict::Take;
        }
        if self.defer {
            bump(&mut self.held, 1);
            // Without a backlog a held SYN is not kept: its client retransmits.
            if !self.backlog.is_empty() {
                self.keep(source, frame);
            }
            Verdict::Hold
        } else {
            bump(&mut self.refused, 1);
            Verdict::Pass
        }
    }

    /// The slot to take back for a waiting client, if any may be taken: under SYN pressure
    /// the oldest half-open slot with no sign of life, otherwise the longest idle holder.
    pub(crate) fn victim(&self, slots: &[TcpSlot]) -> Option<(usize, Reclaim)> {
        let now = self.now;
        let pressure = self.under_pressure(now);
        // One pass for both kinds: a half-open slot with no sign of life before any idle
        // holder (`Reclaim` orders them so), and the oldest of its kind.
        let mut best: Option<(Reclaim, Instant, usize)> = None;
        for (i, slot) in slots.iter().enumerate() {
            let (how, since) = match slot.conn().phase() {
                Phase::HalfOpen { since } if pressure && !slot.proven() => {
                    (Reclaim::Recycle, since)
                }
                _ => match slot.conn().idle_holder_since() {
                    Some(since) if elapsed(since, now) >= IDLE_HOLDER_AFTER => {
                        (Reclaim::Evict, since)
                    }
                    _ => continue,
                },
            };
            if best.is_none_or(|(best_how, best_since, _)| (how, since) < (best_how, best_since)) {
                best = Some((how, since, i));
            }
        }
        best.map(|(how, _, i)| (i, how))
    }

    /// Whether a client waits in the backlog.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiting > 0
    }

    /// A slot to take back for the clients in the backlog when no listener is free; looked for
    /// once per count of the slots.
    pub(crate) fn victim_for_waiters(&mut self, slots: &[TcpSlot]) -> Option<(usize, Reclaim)> {
        if self.waiting == 0 || self.listeners > 0 || self.no_victim {
            return None;
        }
        let victim = self.victim(slots);
        self.no_victim = victim.is_none();
        victim
    }

    /// Hand the next waiting client to `f` and forget it: the oldest for a slot that freed by
    /// itself, the newest (or the SYN that asked, without a backlog) for a slot taken back.
    pub(crate) fn take_waiter<R>(
        &mut self,
        newest: bool,
        f: impl FnOnce(&HeldSyn) -> R,
    ) -> Option<R> {
        // One loop for both ends of the queue; ties go to the later place for the newest and
        // the earlier for the oldest.
        let mut pick: Option<&mut HeldSyn> = None;
        for held in places(&mut self.backlog, &mut self.taker) {
            if held.is_free() {
                continue;
            }
            let better = pick.as_ref().is_none_or(|p| {
                if newest {
                    held.first >= p.first
                } else {
                    held.first < p.first
                }
            });
            if better {
                pick = Some(held);
            }
        }
        let entry = pick?;
        self.waiting = self.waiting.saturating_sub(1);
        let handed = f(entry);
        entry.frame.clear();
        Some(handed)
    }

    /// Listeners free since the last count.
    pub(crate) fn listeners(&self) -> usize {
        self.listeners
    }

    /// Keep a copy of a held SYN. A retransmission replaces its client's earlier copy and keeps
    /// its place; when every place is taken the longest-waiting copy makes room.
    fn keep(&mut self, source: IpEndpoint, frame: &[u8]) {
        // A SYN too large to keep is held without a copy: its client retransmits.
        if frame.len() > MAX_SYN_FRAME {
            return;
        }
        let now = self.now;
        let places = places(&mut self.backlog, &mut self.taker);
        // One pass: the client's earlier copy, else the first free place, else the
        // longest-waiting copy.
        let mut free = None;
        let mut oldest: Option<(Instant, usize)> = None;
        for (i, held) in places.iter_mut().enumerate() {
            if held.is_free() {
                free = free.or(Some(i));
            } else if held.source == source {
                held.hold(now, frame);
                return;
            } else if oldest.is_none_or(|(first, _)| held.first < first) {
                oldest = Some((held.first, i));
            }
        }
        let place = match free {
            Some(free) => {
                self.waiting = self.waiting.saturating_add(1);
                Some(free)
            }
            None => oldest.map(|(_, i)| i),
        };
        if let Some(entry) = place.and_then(|i| places.get_mut(i)) {
            (entry.source, entry.first) = (source, now);
            entry.hold(now, frame);
        }
    }
}

/// Where waiting clients are kept: the backlog, or without one the taker's place.
fn places<'p>(backlog: &'p mut [HeldSyn], taker: &'p mut HeldSyn) -> &'p mut [HeldSyn] {
    if backlog.is_empty() {
        core::slice::from_mut(taker)
    } else {
        backlog
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::conn::EchoConn;
    use crate::sim::frames::{self, Peer};

    const PORT: u16 = 7;

    fn ms(n: i64) -> Instant {
        Instant::from_millis(n)
    }

    fn syn_from(port: u16) -> frames::Frame {
        frames::syn(&Peer::client_v4(port), &Peer::server_v4(PORT), 1)
    }

    fn listening() -> TcpSlot {
        TcpSlot::in_state(EchoConn::in_phase(Phase::Listening, false, ms(0)), None)
    }

    fn half_open(since: Instant, peer_port: u16) -> TcpSlot {
        let peer = Peer::client_v4(peer_port).endpoint();
        TcpSlot::in_state(
            EchoConn::in_phase(Phase::HalfOpen { since }, false, since),
            Some(peer),
        )
    }

    /// A connection accepted at `since` that has (or has not) `heard` from its peer.
    fn echoing(since: Instant, heard: bool, peer_port: u16) -> TcpSlot {
        let peer = Peer::client_v4(peer_port).endpoint();
        TcpSlot::in_state(EchoConn::in_phase(Phase::Echoing, heard, since), Some(peer))
    }

    fn judge(a: &mut Admission<'_>, slots: &mut [TcpSlot], port: u16) -> Verdict {
        a.judge(Medium::Ethernet, &syn_from(port), slots)
    }

    #[test]
    fn free_listeners_admit_then_defer_holds_and_refuse_passes() {
        let mut slots = [listening(), listening()];
        let mut a = Admission::new(PORT, true, ManagedSlice::Borrowed(&mut []));
        a.recount(ms(0), &slots);
        assert_eq!(judge(&mut a, &mut slots, 1000), Verdict::Admit);
        assert_eq!(judge(&mut a, &mut slots, 1001), Verdict::Admit);
        assert_eq!(judge(&mut a, &mut slots, 1002), Verdict::Hold);
        assert!(!a.has_waiters(), "no backlog: held, not kept");
        let other = frames::tcp(
            &Peer::client_v4(1003),
            &Peer::server_v4(PORT),
            smoltcp::wire::TcpControl::None,
            1,
            Some(1),
            b"data",
        );
        assert_eq!(a.judge(Medium::Ethernet, &other, &mut slots), Verdict::Pass);
        assert_eq!((a.held(), a.refused()), (1, 0));

        let mut refuse = Admission::new(PORT, false, ManagedSlice::Borrowed(&mut []));
        refuse.recount(ms(0), &[]);
        assert_eq!(judge(&mut refuse, &mut [], 1000), Verdict::Pass);
        assert_eq!((refuse.held(), refuse.refused()), (0, 1));
    }

    #[test]
    fn a_retransmitted_syn_never_reaches_a_listener_and_proves_its_slot() {
        let mut slots = [half_open(ms(0), 1000), listening()];
        let mut a = Admission::new(PORT, true, ManagedSlice::Borrowed(&mut []));
        a.recount(ms(1000), &slots);
        assert_eq!(judge(&mut a, &mut slots, 1000), Verdict::Hold);
        assert!(slots[0].proven());
        assert_eq!(a.held(), 0, "not a client held back");
        assert_eq!(
            judge(&mut a, &mut slots, 1001),
            Verdict::Admit,
            "the listener is still free"
        );
    }

    #[test]
    fn half_the_pool_half_open_and_unanswered_is_a_flood() {
        let mut slots = [
            half_open(ms(0), 1),
            half_open(ms(10), 2),
            echoing(ms(0), true, 3),
            echoing(ms(0), true, 4),
        ];
        let mut a = Admission::new(PORT, true, ManagedSlice::Borrowed(&mut []));
        a.recount(ms(100), &slots);
        assert!(!a.under_pressure(ms(100)), "not for 250 ms yet");
        a.recount(ms(300), &slots);
        assert!(a.under_pressure(ms(300)));
        assert_eq!(
            a.victim(&slots),
            Some((0, Reclaim::Recycle)),
            "the oldest half-open"
        );
        assert_eq!(judge(&mut a, &mut slots, 5000), Verdict::Take);
        assert!(a.has_waiters(), "without a backlog, in the taker's place");
        assert_eq!(
            a.take_waiter(true, HeldSyn::source),
            Some(Peer::client_v4(5000).endpoint())
        );
        assert!(!a.has_waiters());
        assert_eq!(
            a.handshake_limit(ms(300), Some(Duration::from_secs(5))),
            Some(SYN_PRESSURE_HANDSHAKE)
        );
        // A peer that retransmitted its SYN is real: its slot is never recycled.
        slots[0].prove();
        assert_eq!(a.victim(&slots), Some((1, Reclaim::Recycle)));
        slots[1].prove();
        assert_eq!(a.victim(&slots), None);
        // The defence ends SYN_PRESSURE_HOLD after the flood's shape was last seen.
        let later = ms(300 + 10_000);
        a.recount(later, &slots);
        assert!(!a.under_pressure(later));
        assert_eq!(a.poll_at(), None, "no deadline left in the past");
    }

    #[test]
    fn one_slow_handshake_among_busy_slots_is_not_a_flood() {
        // A lossy link: one SYN-ACK lost, every other slot serving a client.
        let slots = [
            half_open(ms(0), 1),
            echoing(ms(0), true, 2),
            echoing(ms(0), true, 3),
            echoing(ms(0), true, 4),
        ];
        let mut a = Admission::new(PORT, true, ManagedSlice::Borrowed(&mut []));
        for t in [0, 300, 900, 2000] {
            a.recount(ms(t), &slots);
        }
        assert!(!a.under_pressure(ms(2000)));
        assert_eq!(a.victim(&slots), None);
    }

    #[test]
    fn handshakes_just_begun_do_not_make_a_flood() {
        // One slow handshake (a lost SYN-ACK) and one the backlog just replayed: half the pool
        // is half-open, but only one slot has waited for a peer that does not answer.
        let slots = [
            half_open(ms(0), 1),
            half_open(ms(299), 2),
            echoing(ms(0), true, 3),
            echoing(ms(0), true, 4),
        ];
        let mut a = Admission::new(PORT, true, ManagedSlice::Borrowed(&mut []));
        a.recount(ms(300), &slots);
        assert!(!a.under_pressure(ms(300)));
        // Both stale: a flood's shape.
        a.recount(ms(600), &slots);
        assert!(a.under_pressure(ms(600)));
    }

    #[test]
    fn an_idle_holder_is_taken_back_after_three_seconds_not_a_talking_client() {
        let slots = [echoing(ms(0), false, 1), echoing(ms(0), true, 2)];
        let mut a = Admission::new(PORT, true, ManagedSlice::Borrowed(&mut []));
        a.recount(ms(2_900), &slots);
        assert_eq!(
            a.victim(&slots),
            None,
            "its first segment may still be in flight"
        );
        a.recount(ms(3_000), &slots);
        assert_eq!(a.victim(&slots), Some((0, Reclaim::Evict)));
    }

    #[test]
    fn the_backlog_serves_the_oldest_for_a_free_slot_and_the_newest_for_a_taken_one() {
        let mut backlog = [HeldSyn::EMPTY, HeldSyn::EMPTY, HeldSyn::EMPTY];
        let mut a = Admission::new(PORT, true, ManagedSlice::Borrowed(&mut backlog[..]));
        let mut slots = [echoing(ms(0), true, 1)];
        for (t, port) in [(0, 100), (10, 101), (20, 102), (30, 100)] {
            a.recount(ms(t), &slots);
            assert_eq!(judge(&mut a, &mut slots, port), Verdict::Hold);
        }
        assert!(a.has_waiters());
        // A retransmission keeps its client's place.
        let mut next = |newest| a.take_waiter(newest, |w| w.source().port);
        assert_eq!(next(false), Some(100));
        assert_eq!(next(true), Some(102));
        assert_eq!(next(true), Some(101));
        assert_eq!(next(false), None);
        assert!(!a.has_waiters());
        // Stale waiters are forgotten.
        a.recount(ms(100), &slots);
        judge(&mut a, &mut slots, 200);
        a.recount(ms(100) + BACKLOG_MAX_AGE, &slots);
        assert!(!a.has_waiters());
    }
}
