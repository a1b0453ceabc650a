//! The echo node: the TCP and UDP echo services behind one poll, as one straight pipeline.
//!
//! Each [`EchoNode::poll`] runs these stages in order:
//!
//! 1. **Service** of every slot and of UDP: timeouts, slots that listen again.
//! 2. **Ingress**, frame by frame. Each frame passes [`Admission`] first, which lets it through
//!    to smoltcp, holds it, or asks for a slot to be taken back for a waiting client. Waiting
//!    clients are handed to free listeners before the next frame. When a frame may have ended
//!    a connection, the slots are served before the next frame (which may be a SYN), so a
//!    back-to-back client never meets a missing listener: the one bounded loop back.
//! 3. **Service** again: echo what arrived.
//! 4. **Egress**: transmit everything, serving again while that changes a socket.

use smoltcp::iface::{Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::time::{Duration, Instant};

use crate::admission::{Admission, Reclaim, Verdict};
use crate::conn::earliest;
use crate::counters::{TcpCounters, UdpCounters};
use crate::device::{Gate, Replay};
use crate::recovery::{self, DUP_ACKS};
use crate::sockets::Sockets;
use crate::storage::{TcpBuffers, UdpBuffers};
use crate::tcp_server::{Overflow, TcpConfig, TcpSlots};
use crate::udp_server::{UdpConfig, UdpEcho};
use crate::{Error, conn};

/// Bound on frames taken from the device in one poll, so a flood cannot starve the caller;
/// a poll that stops there asks to be called again at once (see `poll_at`).
const MAX_FRAMES_PER_POLL: usize = 1024;

/// A TCP and a UDP echo service on one port each, over a pool of TCP slots; see the
/// [crate docs](crate).
#[derive(Debug)]
pub struct EchoNode<'a> {
    tcp: TcpSlots<'a>,
    udp: UdpEcho<'a>,
    admission: Admission<'a>,
    /// The last poll stopped at `MAX_FRAMES_PER_POLL`, or left waiting clients and a free
    /// listener: poll again at once.
    work_left: bool,
    /// Loss and reordering recovery ([`recovery`](crate::recovery)) is on.
    recovery: bool,
}

impl<'a> EchoNode<'a> {
    /// Create both services' sockets in `sockets`: one per TCP slot and one for UDP.
    ///
    /// Fails, having added nothing, when a port is 0, there are no slots, a buffer is too
    /// small, or the set has no room for every socket.
    // Inlined: firmware calls it once, and its frame would otherwise add to the boot stack.
    #[inline]
    pub fn new(
        sockets: &mut Sockets<'a>,
        tcp: TcpConfig,
        tcp_buffers: TcpBuffers<'a>,
        udp: UdpConfig,
        udp_buffers: UdpBuffers<'a>,
    ) -> Result<Self, Error> {
        let TcpBuffers {
            slots,
            backlog,
            rx,
            tx,
        } = tcp_buffers;
        if tcp.port == 0 || udp.port == 0 {
            return Err(Error::InvalidPort);
        }
        if slots.is_empty() {
            return Err(Error::NoSlots);
        }
        if rx.len() < slots.len() || tx.len() < slots.len() || udp_buffers.meta.len() < 2 {
            return Err(Error::BufferTooSmall);
        }
        if udp_buffers.payload.len() < 3 {
            return Err(Error::BufferTooSmall);
        }
        if sockets.free() < slots.len().saturating_add(1) {
            return Err(Error::SocketSetFull);
        }
        // UDP first: its socket is found by a scan of the set, which then ends at once.
        let udp = UdpEcho::new(udp, udp_buffers, sockets)?;
        let defer = tcp.overflow == Overflow::Defer;
        let tcp = TcpSlots::new(tcp, slots, rx, tx, sockets);
        let mut admission = Admission::new(tcp.config().port, defer, backlog);
        admission.recount(Instant::ZERO, tcp.slots());
        Ok(Self {
            tcp,
            udp,
            admission,
            work_left: false,
            recovery: cfg!(feature = "recovery"),
        })
    }

    /// The TCP service's settings.
    pub fn tcp_config(&self) -> &TcpConfig {
        self.tcp.config()
    }

    /// The UDP service's settings.
    pub fn udp_config(&self) -> &UdpConfig {
        self.udp.config()
    }

    /// TCP counters so far.
    pub fn tcp_counters(&self) -> TcpCounters {
        TcpCounters {
            held_syns: self.admission.held(),
            refused: self.admission.refused(),
            ..self.tcp.counters()
        }
    }

    /// UDP counters so far.
    pub fn udp_counters(&self) -> UdpCounters {
        self.udp.counters()
    }

    /// Turn loss and reordering recovery off or on (feature `recovery`; on by default), to
    /// measure what it does on the simulated link.
    #[cfg(feature = "sim")]
    pub fn set_recovery(&mut self, on: bool) {
        self.recovery = on && cfg!(feature = "recovery");
    }

    /// The TCP slots' socket handles, for inspection (smoltcp's state of each slot).
    pub fn tcp_handles(&self) -> impl Iterator<Item = SocketHandle> + '_ {
        self.tcp.handles()
    }

    /// TCP slots serving a client now.
    pub fn active_connections(&self) -> usize {
        self.tcp.active()
    }

    /// Receive what the device has, echo it, and transmit the echoes. Returns whether
    /// anything progressed. Call it again no later than [`poll_at`](Self::poll_at).
    pub fn poll<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        iface.poll_maintenance(now);
        let mut progressed = self.serve(now, sockets);
        progressed |= self.ingress(now, iface, device, sockets);
        progressed |= self.serve(now, sockets);
        progressed |= self.egress(now, iface, device, sockets);
        if self.admission.has_waiters() && self.admission.listeners() > 0 {
            self.work_left = true;
        }
        progressed
    }

    /// When [`poll`](Self::poll) must run next without network activity (`None`: only when a
    /// frame arrives). May be in the past: then poll at once.
    pub fn poll_at(
        &self,
        now: Instant,
        iface: &mut Interface,
        sockets: &SocketSet<'_>,
    ) -> Option<Instant> {
        if self.work_left {
            return Some(Instant::ZERO);
        }
        let handshake = self.handshake_limit(now);
        let services = earliest(self.udp.poll_at(), self.admission.poll_at());
        let services = earliest(self.tcp.poll_at(handshake), services);
        earliest(iface.poll_at(now, sockets), services)
    }

    /// How long the caller may sleep before [`poll`](Self::poll) (`None`: until a frame
    /// arrives).
    pub fn poll_delay(
        &self,
        now: Instant,
        iface: &mut Interface,
        sockets: &SocketSet<'_>,
    ) -> Option<Duration> {
        self.poll_at(now, iface, sockets)
            .map(|at| conn::elapsed(now, at))
    }

    fn handshake_limit(&self, now: Instant) -> Option<Duration> {
        self.admission
            .handshake_limit(now, self.tcp.config().handshake_timeout)
    }

    /// Serve every slot and UDP once, then let admission count the slots again.
    fn serve(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let handshake = self.handshake_limit(now);
        let tcp = self.tcp.service(now, sockets, handshake);
        let udp = self.udp.service(now, sockets);
        self.admission.recount(now, self.tcp.slots());
        tcp | udp
    }

    /// Take frames one at a time through admission (stage 2).
    fn ingress<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        let mut progressed = false;
        self.work_left = true;
        let medium = device.capabilities().medium;
        for _ in 0..MAX_FRAMES_PER_POLL {
            // Waiting clients first: a free listener goes to the oldest, as in a listen
            // backlog; a slot that may be taken back goes to the newest.
            if self.admission.has_waiters() {
                if self.admission.listeners() > 0 {
                    let newest = self.tcp.take_idle_freed();
                    progressed |= self.hand_in(now, iface, device, sockets, newest);
                    continue;
                }
                if let Some((slot, how)) = self.admission.victim_for_waiters(self.tcp.slots()) {
                    progressed |= self.take_back(now, iface, device, sockets, slot, how);
                    continue;
                }
            }
            let mut gate = Gate::new(
                device,
                medium,
                &mut self.admission,
                self.tcp.slots_mut(),
                self.recovery,
            );
            let result = iface.poll_ingress_single(now, &mut gate, sockets);
            let (verdict, dup_ack) = (gate.verdict(), gate.take_dup_ack());
            if let Some((mut dup_ack, pure)) = dup_ack {
                // Three pure duplicate ACKs: smoltcp's own fast retransmit. A copy of a segment
                // without data may carry a window probe's sequence number, one below what
                // smoltcp accepts: the same three once more one higher (whichever set smoltcp
                // finds out of its window only earns a rate-limited challenge ACK).
                for round in 0..2 {
                    for _ in 0..DUP_ACKS {
                        iface.poll_ingress_single(now, &mut Replay::new(device, &dup_ack), sockets);
                    }
                    if round == 1 || !pure || !recovery::next_seq(medium, &mut dup_ack) {
                        break;
                    }
                }
                self.tcp.count_recovery();
            }
            if verdict == Verdict::Take
                && let Some((slot, how)) = self.admission.victim(self.tcp.slots())
            {
                progressed |= self.take_back(now, iface, device, sockets, slot, how);
            }
            match result {
                PollIngressSingleResult::None => {
                    self.work_left = false;
                    break;
                }
                PollIngressSingleResult::PacketProcessed => progressed = true,
                PollIngressSingleResult::SocketStateChanged => {
                    progressed = true;
                    // A slot that may free up must listen again before the next frame (which
                    // may be a SYN), and a slot a SYN just took must know its peer (a copy of
                    // that SYN must not reach another listener); echo work waits for stage 3.
                    if verdict == Verdict::Admit || self.tcp.may_free() {
                        self.serve(now, sockets);
                    }
                }
            }
        }
        progressed
    }

    /// Take slot `slot` back (an RST first for an idle holder) and give it to the newest
    /// waiting client.
    #[cold]
    fn take_back<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
        slot: usize,
        how: Reclaim,
    ) -> bool {
        if how == Reclaim::Evict {
            // An idle holder has a live peer: its RST leaves before the socket is reused.
            self.tcp.abort(slot, sockets);
            iface.poll_egress(now, device, sockets);
        }
        self.tcp.reclaim(slot, how, sockets);
        self.admission.recount(now, self.tcp.slots());
        // The slot listens again (no other did, or it would not have been taken back).
        if self.admission.listeners() > 0 {
            self.hand_in(now, iface, device, sockets, true);
        }
        true
    }

    /// Hand the next waiting client's SYN (the newest or the oldest) to a free listener,
    /// unless the client got in meanwhile. Returns whether a listener took it.
    #[cold]
    fn hand_in<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
        newest: bool,
    ) -> bool {
        let tcp = &self.tcp;
        let handed = self.admission.take_waiter(newest, |waiter| {
            let new_client = !tcp.talks_to(waiter.source());
            if new_client {
                iface.poll_ingress_single(now, &mut Replay::new(device, waiter.frame()), sockets);
            }
            new_client
        }) == Some(true);
        if handed {
            // The slot that took it is half-open now: count the slots again (which also
            // counts the listener it used).
            self.serve(now, sockets);
        }
        handed
    }

    /// Transmit everything (stage 4). smoltcp sends at most one packet per socket per
    /// `poll_egress`; serving again after egress catches state it changed (a retransmission
    /// timeout, an RST sent).
    fn egress<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        let mut progressed = false;
        let mut budget = MAX_FRAMES_PER_POLL;
        while budget > 0 {
            let mut sent = false;
            while budget > 0 && iface.poll_egress(now, device, sockets) != PollResult::None {
                sent = true;
                budget = budget.saturating_sub(1);
            }
            progressed |= sent;
            if !sent || !self.serve(now, sockets) {
                break;
            }
        }
        progressed
    }
}
