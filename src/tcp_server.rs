//! The TCP echo slots: the glue between smoltcp's TCP sockets and the per-connection state
//! machine in [`conn`](crate::conn).
//!
//! Each slot is one TCP socket listening on the service port, with a share of the caller's
//! receive and transmit buffers. On every service pass each slot's socket is observed, its
//! [`EchoConn`] decides, and the decision is carried out here.
//!
//! **Backpressure.** Bytes leave a receive buffer only when the transmit buffer has room for
//! them, so a client that stops reading fills its receive window, smoltcp advertises a zero
//! window, and the client's kernel waits. Nothing grows and nothing is dropped.

use managed::ManagedSlice;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

use crate::admission::Reclaim;
use crate::conn::{
    Action, CloseReason, EchoConn, Event, Link, Observation, Phase, Timeouts, earliest,
};
use crate::counters::{TcpCounters, bump};
use crate::quirks::{find_mut, pair_by_handle, renew};
use crate::recovery::Recovery;
use crate::sockets::Sockets;
use crate::wire::TcpInFrame;

/// Bytes moved per copy when echoing. The scratch buffer lives on the stack: on
/// microcontrollers (32-bit and smaller) 512 B keeps the stack high-water mark low; hosts
/// have stack to spare and save instructions with 4 KiB (fewer calls per byte: 1.055x -> 1.046x
/// the bare smoltcp loop in `benches/callgrind.sh`; larger chunks pay for stack probes).
const ECHO_CHUNK: usize = if usize::BITS >= 64 { 4096 } else { 512 };

/// Bound on state-machine steps per slot per pass, so one slot cannot starve the others.
const STEPS_PER_PASS: usize = 8;

/// Settings of the TCP echo service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpConfig {
    /// The service port (RFC 862 says 7; the seed's programs use 8000).
    pub port: u16,
    /// What to do with a SYN when every slot is busy.
    pub overflow: Overflow,
    /// Abort a connection after this long without a byte moving either way (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Drop a connection that stays half-open this long (`None`: never). Under a SYN flood
    /// it is at most 1 s.
    pub handshake_timeout: Option<Duration>,
    /// TCP keep-alive interval (`None`: off).
    pub keep_alive: Option<Duration>,
    /// smoltcp's delayed-ACK time (`None`: ACK at once).
    pub ack_delay: Option<Duration>,
}

impl TcpConfig {
    /// Port 7, `Overflow::Defer`, 60 s idle and 5 s handshake timeouts, no keep-alive,
    /// smoltcp's 10 ms ACK delay.
    pub const DEFAULT: Self = Self {
        port: 7,
        overflow: Overflow::Defer,
        idle_timeout: Some(Duration::from_secs(60)),
        handshake_timeout: Some(Duration::from_secs(5)),
        keep_alive: None,
        ack_delay: Some(Duration::from_millis(10)),
    };

    /// The default settings on another port.
    pub const fn on_port(port: u16) -> Self {
        Self {
            port,
            ..Self::DEFAULT
        }
    }

    fn timeouts(&self, handshake: Option<Duration>) -> Timeouts {
        Timeouts {
            idle: self.idle_timeout,
            handshake,
        }
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the service does with a SYN when every slot is busy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Overflow {
    /// Ignore the SYN, like a full Linux listen backlog: the client retransmits and is served
    /// when a slot frees (at once, with a backlog).
    #[default]
    Defer,
    /// Let smoltcp answer RST: the client sees "connection refused".
    Refuse,
}

/// One connection slot: its socket, its state machine and what admission knows of its peer.
///
/// Give the node a slice of them (`[TcpSlot::EMPTY; N]`) for `N` slots. All zero bytes, so a
/// `static` of them costs no flash.
#[derive(Debug, Clone, Copy)]
pub struct TcpSlot {
    /// `None` until the slot's socket is made.
    handle: Option<SocketHandle>,
    conn: EchoConn,
    /// The connection's peer (port 0: none).
    peer: IpEndpoint,
    /// The half-open peer retransmitted its SYN: it exists and answers.
    proven: bool,
    /// The state machine asked for [`Action::Recycle`]; done once the set is free to change.
    recycle: bool,
    /// The peer retransmitted its SYN: give the socket a fresh entry (no neighbour silence).
    nudge: bool,
    /// Loss recovery from the peer's SACK blocks, and its newest ACK.
    recovery: Recovery,
    /// Segments handed in with a newer ACK, not yet added to the counters.
    #[cfg(feature = "recovery")]
    stale_acks: u32,
}

const NO_PEER: IpEndpoint = IpEndpoint {
    addr: IpAddress::Ipv4(Ipv4Address::UNSPECIFIED),
    port: 0,
};

impl TcpSlot {
    /// A slot not in use yet.
    pub const EMPTY: Self = Self {
        handle: None,
        conn: EchoConn::new(),
        peer: NO_PEER,
        proven: false,
        recycle: false,
        nudge: false,
        recovery: Recovery::NEW,
        #[cfg(feature = "recovery")]
        stale_acks: 0,
    };

    pub(crate) fn conn(&self) -> &EchoConn {
        &self.conn
    }

    /// The connection's peer, if it has one.
    pub(crate) fn peer(&self) -> Option<IpEndpoint> {
        (self.peer.port != 0).then_some(self.peer)
    }

    /// Whether this slot's peer sent segment `tcp` of `frame`: the ports first, the address
    /// (read from the frame) only when they match. Port 0 is never a peer.
    pub(crate) fn is_sender_of(&self, tcp: &TcpInFrame, frame: &[u8]) -> bool {
        self.peer.port == tcp.src_port
            && tcp.src_port != 0
            && tcp.source(frame) == Some(self.peer.addr)
    }

    pub(crate) fn proven(&self) -> bool {
        self.proven
    }

    /// Record a sign of life from the peer (a retransmitted SYN).
    pub(crate) fn prove(&mut self) {
        self.proven = true;
        self.nudge = true;
    }

    /// A slot in the state `conn` with `peer` (unit tests of the admission policy).
    #[cfg(test)]
    pub(crate) fn in_state(conn: EchoConn, peer: Option<IpEndpoint>) -> Self {
        Self {
            conn,
            peer: peer.unwrap_or(NO_PEER),
            ..Self::EMPTY
        }
    }

    pub(crate) fn recovery_mut(&mut self) -> &mut Recovery {
        &mut self.recovery
    }

    /// A segment of this slot's peer was handed in with a newer ACK than it carried.
    pub(crate) fn count_stale_ack(&mut self) {
        #[cfg(feature = "recovery")]
        {
            self.stale_acks = self.stale_acks.wrapping_add(1);
        }
    }

    /// Stale ACKs counted since the last call.
    fn take_stale_acks(&mut self) -> u32 {
        #[cfg(feature = "recovery")]
        return core::mem::take(&mut self.stale_acks);
        #[cfg(not(feature = "recovery"))]
        0
    }

    fn listening(&mut self) {
        self.conn.listening();
        self.peer = NO_PEER;
        self.proven = false;
        self.recovery = Recovery::NEW;
    }
}

impl Default for TcpSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// The TCP echo service's slots over their sockets.
#[derive(Debug)]
pub(crate) struct TcpSlots<'a> {
    config: TcpConfig,
    /// Sorted by handle, the order in which the socket set iterates.
    slots: ManagedSlice<'a, TcpSlot>,
    counters: TcpCounters,
    /// Slots freed by the idle timeout of a connection that never sent a byte, not yet given
    /// to a waiting client.
    idle_freed: usize,
    /// Some slot may listen again at its next step. Only a service pass or a reclaim changes
    /// the slots' phases, so it is counted there, not for every frame.
    may_free: bool,
}

impl<'a> TcpSlots<'a> {
    /// One listening socket per slot in `sockets`, over equal shares of `rx` and `tx`.
    ///
    /// `EchoNode::new` checked all that could fail here before anything was added: the port,
    /// the slot count, a byte of each buffer per slot and the set's room. Should a socket
    /// still not be made, its slot stays without one and never listens.
    pub(crate) fn new(
        config: TcpConfig,
        mut slots: ManagedSlice<'a, TcpSlot>,
        rx: &'a mut [u8],
        tx: &'a mut [u8],
        sockets: &mut Sockets<'a>,
    ) -> Self {
        let n = slots.len();
        // Never 0, which `chunks_mut` rejects.
        let rx_share = rx.len().checked_div(n).unwrap_or(0).max(1);
        let tx_share = tx.len().checked_div(n).unwrap_or(0).max(1);
        let buffers = rx.chunks_mut(rx_share).zip(tx.chunks_mut(tx_share));
        for (slot, (rx, tx)) in slots.iter_mut().zip(buffers) {
            *slot = TcpSlot::EMPTY;
            slot.handle = listening_socket(rx, tx, &config, sockets);
            if slot.handle.is_some() {
                // Listening at once, so the first SYN finds a listener.
                slot.listening();
            }
        }
        sort_by_handle(&mut slots);
        Self {
            config,
            slots,
            counters: TcpCounters::default(),
            idle_freed: 0,
            may_free: false,
        }
    }

    pub(crate) fn config(&self) -> &TcpConfig {
        &self.config
    }

    pub(crate) fn counters(&self) -> TcpCounters {
        self.counters
    }

    pub(crate) fn slots(&self) -> &[TcpSlot] {
        &self.slots
    }

    pub(crate) fn slots_mut(&mut self) -> &mut [TcpSlot] {
        &mut self.slots
    }

    /// The slots' socket handles.
    pub(crate) fn handles(&self) -> impl Iterator<Item = SocketHandle> + '_ {
        self.slots.iter().filter_map(|s| s.handle)
    }

    /// Duplicate ACKs handed to smoltcp to start a fast retransmit.
    pub(crate) fn count_recovery(&mut self) {
        bump(&mut self.counters.sack_recoveries, 1);
    }

    /// Slots serving a client.
    pub(crate) fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.conn.is_active()).count()
    }

    /// Whether some slot may listen again at its next step (then it must be served before
    /// the next frame, which may be a SYN).
    pub(crate) fn may_free(&self) -> bool {
        self.may_free
    }

    /// Whether some slot already serves `peer` (a waiting client that got in meanwhile).
    pub(crate) fn talks_to(&self, peer: IpEndpoint) -> bool {
        self.slots.iter().any(|s| s.peer() == Some(peer))
    }

    /// Serve every slot once: echo what can be echoed, close, abort or listen again, with
    /// `handshake` as the half-open limit. Returns whether any slot did something.
    pub(crate) fn service(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'_>,
        handshake: Option<Duration>,
    ) -> bool {
        let mut progressed = false;
        let config = self.config;
        let timeouts = config.timeouts(handshake);
        // A proven client is no flood: the configured handshake limit, not the flood's.
        let proven_timeouts = config.timeouts(config.handshake_timeout);
        let counters = &mut self.counters;
        let idle_freed = &mut self.idle_freed;
        pair_by_handle::<_, tcp::Socket>(
            sockets,
            &mut self.slots,
            |s| s.handle,
            |slot, socket| {
                bump(&mut counters.stale_acks, u64::from(slot.take_stale_acks()));
                if let Some(socket) = socket {
                    let holder = slot.conn.idle_holder_since().is_some();
                    let timed_out = counters.timed_out;
                    let limits = if slot.proven {
                        &proven_timeouts
                    } else {
                        &timeouts
                    };
                    progressed |= drive(slot, socket, now, &config, limits, counters);
                    if holder && counters.timed_out != timed_out {
                        *idle_freed = idle_freed.saturating_add(1);
                    }
                }
            },
        );
        // What needs the whole set, in one pass: recycling (which renews the entry too), and
        // a fresh entry for a slot whose peer proved itself.
        let mut sort = false;
        let mut may_free = false;
        for slot in self.slots.iter_mut() {
            if slot.recycle {
                sort |= recycle_slot(slot, sockets, &config);
            } else if slot.nudge {
                sort |= renew_slot(slot, sockets);
            }
            slot.nudge = false;
            may_free |= slot.conn.may_free();
        }
        if sort {
            sort_by_handle(&mut self.slots);
        }
        self.may_free = may_free;
        progressed
    }

    /// Whether the next free listener should go to the newest waiting client: it was freed by
    /// an idle holder's timeout (see [`admission`](crate::admission)).
    pub(crate) fn take_idle_freed(&mut self) -> bool {
        let freed = self.idle_freed > 0;
        self.idle_freed = self.idle_freed.saturating_sub(1);
        freed
    }

    /// Abort slot `i`'s connection (its RST leaves with the next egress); the slot is
    /// [`reclaim`](Self::reclaim)ed after that.
    pub(crate) fn abort(&mut self, i: usize, sockets: &mut SocketSet<'_>) {
        if let Some(handle) = self.slots.get(i).and_then(|s| s.handle)
            && let Some(socket) = find_mut::<tcp::Socket>(sockets, handle)
        {
            socket.abort();
        }
    }

    /// Give slot `i` back to listening for a waiting client, counting why.
    pub(crate) fn reclaim(&mut self, i: usize, how: Reclaim, sockets: &mut SocketSet<'_>) {
        let config = self.config;
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        match how {
            Reclaim::Evict => {
                if let Some(event) = slot.conn.evict() {
                    diag!("smolecho: tcp/{} {:?}", config.port, event);
                    count(&mut self.counters, event);
                }
            }
            Reclaim::Recycle => bump(&mut self.counters.half_open_recycled, 1),
        }
        if recycle_slot(slot, sockets, &config) {
            sort_by_handle(&mut self.slots);
        }
        self.may_free = self.slots.iter().any(|s| s.conn.may_free());
    }

    /// The earliest instant at which a slot needs service without network activity.
    pub(crate) fn poll_at(&self, handshake: Option<Duration>) -> Option<Instant> {
        let timeouts = self.config.timeouts(handshake);
        self.slots
            .iter()
            .fold(None, |at, s| earliest(at, s.conn.deadline(&timeouts)))
    }
}

/// Sort the slots by handle, as the socket set iterates. An insertion sort: linear when at
/// most one slot is out of place (a renewed socket that landed in another entry), and far
/// smaller in flash than the standard library's sorts.
fn sort_by_handle(slots: &mut [TcpSlot]) {
    for i in 1..slots.len() {
        let mut j = i;
        while let Some(prev) = j.checked_sub(1) {
            match (slots.get(prev), slots.get(j)) {
                (Some(a), Some(b)) if a.handle > b.handle => slots.swap(prev, j),
                _ => break,
            }
            j = prev;
        }
    }
}

/// One slot's socket over `rx` and `tx`, listening, added to `sockets`.
///
/// Not inlined: the socket is built on the stack before it moves into the set, and firmware
/// should pay for one such temporary at a time, not one per slot in the caller's frame.
#[inline(never)]
fn listening_socket<'a>(
    rx: &'a mut [u8],
    tx: &'a mut [u8],
    config: &TcpConfig,
    sockets: &mut Sockets<'a>,
) -> Option<SocketHandle> {
    let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    if !listen(&mut socket, config) {
        return None;
    }
    sockets.add(socket).ok()
}

/// Put `socket` in LISTEN on the service port, with the service's settings (`listen` resets
/// them). Fails only on port 0, which `EchoNode::new` rejects, or on an open socket. Not
/// inlined: one copy serves every caller.
#[inline(never)]
fn listen(socket: &mut tcp::Socket<'_>, config: &TcpConfig) -> bool {
    let listening = socket.listen(config.port).is_ok();
    // An echo answers what it gets at once; Nagle would hold small echoes for an ACK.
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(config.ack_delay);
    socket.set_keep_alive(config.keep_alive);
    listening
}

/// Step one slot until it has nothing more to do (bounded). Returns whether it acted.
fn drive(
    slot: &mut TcpSlot,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
    config: &TcpConfig,
    timeouts: &Timeouts,
    counters: &mut TcpCounters,
) -> bool {
    let mut acted = false;
    for _ in 0..STEPS_PER_PASS {
        let step = slot.conn.step(now, observe(socket), timeouts);
        if let Some(event) = step.event {
            diag!("smolecho: tcp/{} {:?}", config.port, event);
            count(counters, event);
        }
        match step.action {
            Action::Wait => break,
            Action::Listen => {
                // The state machine never asks to listen on an open socket.
                if !listen(socket, config) {
                    socket.abort();
                    break;
                }
                slot.listening();
            }
            Action::Echo { max } => {
                let moved = echo(socket, max);
                slot.conn.echoed(now, moved);
                bump(&mut counters.bytes_in, moved as u64);
                bump(&mut counters.bytes_out, moved as u64);
                if moved == 0 {
                    break;
                }
            }
            Action::Close => socket.close(),
            Action::Abort => socket.abort(),
            Action::Recycle => {
                // Needs the whole socket set: `service` finishes it after its pass.
                slot.recycle = true;
                return true;
            }
        }
        acted = true;
    }
    if slot.conn.phase() != Phase::Listening {
        slot.peer = socket.remote_endpoint().unwrap_or(NO_PEER);
    }
    acted
}

/// Put a slot's socket back to listening without an RST, in a fresh socket-set entry (see
/// [`renew`]). Returns whether its handle changed (the slots must be sorted again).
fn recycle_slot(slot: &mut TcpSlot, sockets: &mut SocketSet<'_>, config: &TcpConfig) -> bool {
    slot.recycle = false;
    let Some(old) = slot.handle else {
        return false;
    };
    // abort() then listen(): listen() resets the socket, so no RST is ever sent.
    let listening = find_mut::<tcp::Socket>(sockets, old).is_some_and(|socket| {
        socket.abort();
        listen(socket, config)
    });
    let moved = renew_slot(slot, sockets);
    if listening {
        slot.listening();
    } else {
        slot.conn = EchoConn::new();
    }
    moved
}

/// Move a slot's socket into a fresh set entry (see [`renew`]). Returns whether its handle
/// changed (the slots must be sorted again).
#[inline(never)]
fn renew_slot(slot: &mut TcpSlot, sockets: &mut SocketSet<'_>) -> bool {
    let Some(old) = slot.handle else {
        return false;
    };
    let Some(handle) = renew(sockets, old) else {
        return false;
    };
    slot.handle = Some(handle);
    handle != old
}

fn count(counters: &mut TcpCounters, event: Event) {
    let counter = match event {
        Event::Accepted => &mut counters.accepted,
        Event::HandshakeTimeout => &mut counters.handshake_timeouts,
        Event::Closed(CloseReason::Graceful) => &mut counters.closed,
        Event::Closed(CloseReason::Reset) => &mut counters.reset,
        Event::Closed(CloseReason::IdleTimeout) => &mut counters.timed_out,
        Event::Closed(CloseReason::Evicted) => &mut counters.evicted,
    };
    bump(counter, 1);
}

/// What the state machine needs to know of `socket`.
pub(crate) fn observe(socket: &tcp::Socket<'_>) -> Observation {
    use tcp::State;
    let link = match socket.state() {
        State::Listen => Link::Listening,
        State::SynSent | State::SynReceived => Link::Handshake,
        State::Established => Link::Open,
        State::CloseWait => Link::PeerClosed,
        State::FinWait1 | State::FinWait2 | State::Closing | State::LastAck => Link::Finishing,
        State::TimeWait => Link::Done,
        State::Closed if socket.remote_endpoint().is_some() => Link::ResetPending,
        State::Closed => Link::Done,
    };
    Observation {
        link,
        rx_queued: socket.recv_queue(),
        tx_queued: socket.send_queue(),
        tx_free: socket.send_capacity().saturating_sub(socket.send_queue()),
    }
}

/// Move up to `max` bytes from the receive to the transmit buffer; returns how many moved.
///
/// `max` never exceeds the transmit room observed just before, and nothing else writes to the
/// transmit buffer in between, so every byte taken is queued.
fn echo(socket: &mut tcp::Socket<'_>, max: usize) -> usize {
    let mut chunk = [0u8; ECHO_CHUNK];
    let mut moved = 0usize;
    while moved < max {
        let want = max.saturating_sub(moved).min(ECHO_CHUNK);
        let Some(buf) = chunk.get_mut(..want) else {
            break;
        };
        let taken = match socket.recv_slice(buf) {
            Ok(n) => n,
            Err(_) => break,
        };
        let Some(data) = buf.get(..taken) else {
            break;
        };
        if taken == 0 || socket.send_slice(data).unwrap_or(0) != taken {
            break;
        }
        moved = moved.saturating_add(taken);
    }
    moved
}
