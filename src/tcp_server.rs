//! The TCP echo server: a fixed pool of connection slots over smoltcp sockets.
//!
//! This is the glue between smoltcp's TCP sockets and the per-connection state machine in
//! [`conn`](crate::conn). Each slot is one TCP socket listening on the service port, with its
//! buffers taken from a caller-owned [`TcpEchoStorage`]. On every poll each slot's socket is
//! observed, its [`EchoConn`] decides, and the decision is carried out here.
//!
//! **Backpressure.** Bytes leave a receive buffer only when the transmit buffer has room for
//! them, so a client that stops reading fills its receive window, smoltcp advertises a zero
//! window, and the client's kernel waits. Nothing grows and nothing is dropped.

use smoltcp::iface::{Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::{Socket, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::Error;
use crate::conn::{Action, CloseReason, EchoConn, Event, Link, Observation, Phase, Timeouts};
use crate::counters::{TcpCounters, bump};
use crate::gate::{GateState, Overflow, Replay, SynGate};
use crate::sockets::{Sockets, find_mut};

/// Bytes moved per copy when echoing. The scratch buffer lives on the stack: on
/// microcontrollers (32-bit and smaller) 512 B keeps the stack high-water mark low; hosts
/// have stack to spare and save instructions with 2 KiB (fewer calls per byte).
const ECHO_CHUNK: usize = if usize::BITS >= 64 { 2048 } else { 512 };

/// Bound on frames taken from the device in one poll, so a flood cannot starve the caller;
/// a poll that stops there asks to be called again at once (see `poll_at`).
const MAX_FRAMES_PER_POLL: usize = 1024;

/// Every slot half-open for this long means a SYN flood (see `under_syn_pressure`).
pub const SYN_PRESSURE_AFTER: Duration = Duration::from_millis(250);

/// A connection that has not sent a byte this long after its handshake may lose its slot to a
/// new client when no slot is free (the idle-holder defence). Echo clients send at once; a
/// peer that connects and stays silent only holds a slot others wait for.
pub const IDLE_HOLDER_AFTER: Duration = Duration::from_secs(1);

/// The longest a half-open connection lives under SYN pressure (instead of the configured
/// handshake timeout).
pub const SYN_PRESSURE_HANDSHAKE: Duration = Duration::from_secs(1);

/// How long the SYN-flood defence stays on after the flood was last seen.
pub const SYN_PRESSURE_HOLD: Duration = Duration::from_secs(10);

/// Bound on state-machine steps per slot per poll, so one slot cannot starve the others.
const STEPS_PER_POLL: usize = 8;

/// Socket buffers for `SLOTS` connections, `RX` receive and `TX` transmit bytes each.
///
/// Build it with the `const fn` [`new`](Self::new) so it can live in a `static` (through a
/// `StaticCell` or `ConstStaticCell`), or on the stack when small. Large pools belong in a
/// static: `Box::new(TcpEchoStorage::new())` builds the value on the stack first in debug
/// builds, which overflows it for pools of megabytes.
#[derive(Debug)]
pub struct TcpEchoStorage<const SLOTS: usize, const RX: usize, const TX: usize> {
    rx: [[u8; RX]; SLOTS],
    tx: [[u8; TX]; SLOTS],
}

impl<const SLOTS: usize, const RX: usize, const TX: usize> TcpEchoStorage<SLOTS, RX, TX> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Self {
            rx: [[0; RX]; SLOTS],
            tx: [[0; TX]; SLOTS],
        }
    }
}

impl<const SLOTS: usize, const RX: usize, const TX: usize> Default
    for TcpEchoStorage<SLOTS, RX, TX>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Settings of the TCP echo server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpConfig {
    /// The service port (RFC 862 says 7; the seed's programs use 8000).
    pub port: u16,
    /// What to do with a SYN when every slot is busy.
    pub overflow: Overflow,
    /// Idle and handshake timeouts.
    pub timeouts: Timeouts,
    /// TCP keep-alive interval (`None`: off).
    pub keep_alive: Option<Duration>,
    /// smoltcp's delayed-ACK time (`None`: ACK at once).
    pub ack_delay: Option<Duration>,
}

impl TcpConfig {
    /// Port 7, `Overflow::Defer`, default timeouts, no keep-alive, smoltcp's 10 ms ACK delay.
    pub const DEFAULT: Self = Self {
        port: 7,
        overflow: Overflow::Defer,
        timeouts: Timeouts::DEFAULT,
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
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One connection slot: its socket and its state machine.
#[derive(Debug, Clone, Copy)]
struct Slot {
    handle: SocketHandle,
    conn: EchoConn,
    /// The state machine asked for [`Action::Recycle`]; done once the set is free to change.
    recycle: bool,
}

/// A TCP echo server with `SLOTS` connection slots; see the [module docs](self).
///
/// With `Overflow::Defer`, up to `BACKLOG` held SYNs (one per client, about 180 bytes each,
/// inside this value) are replayed as soon as a slot frees, like a Linux listen backlog;
/// with `BACKLOG = 0` (the default) a held client is served at its next retransmission.
#[derive(Debug)]
pub struct TcpEchoServer<const SLOTS: usize, const BACKLOG: usize = 0> {
    config: TcpConfig,
    slots: [Slot; SLOTS],
    gate: GateState<BACKLOG>,
    counters: TcpCounters,
    /// The last poll stopped at `MAX_FRAMES_PER_POLL` with work still waiting.
    work_left: bool,
    /// Until when half-open slots may be recycled for new SYNs (SYN-flood defence).
    pressure_until: Option<Instant>,
}

impl<const SLOTS: usize> TcpEchoServer<SLOTS> {
    /// Create the slots' sockets in `sockets`, over the buffers of `storage`. The server has
    /// no listen backlog; see [`with_backlog`](Self::with_backlog).
    ///
    /// Fails without adding anything when the port is 0, a buffer size or `SLOTS` is 0, or the
    /// set has fewer than `SLOTS` free entries.
    pub fn new<'a, const RX: usize, const TX: usize>(
        config: TcpConfig,
        storage: &'a mut TcpEchoStorage<SLOTS, RX, TX>,
        sockets: &mut Sockets<'a>,
    ) -> Result<Self, Error> {
        Self::with_backlog(config, storage, sockets)
    }
}

impl<const SLOTS: usize, const BACKLOG: usize> TcpEchoServer<SLOTS, BACKLOG> {
    /// Like [`new`](TcpEchoServer::new), with a listen backlog of `BACKLOG` SYNs (name it:
    /// `TcpEchoServer::<8, 64>::with_backlog(...)`).
    pub fn with_backlog<'a, const RX: usize, const TX: usize>(
        config: TcpConfig,
        storage: &'a mut TcpEchoStorage<SLOTS, RX, TX>,
        sockets: &mut Sockets<'a>,
    ) -> Result<Self, Error> {
        if config.port == 0 {
            return Err(Error::InvalidPort);
        }
        if RX == 0 || TX == 0 || SLOTS == 0 {
            return Err(Error::BufferTooSmall);
        }
        if sockets.free() < SLOTS {
            return Err(Error::SocketSetFull);
        }
        let mut buffers = storage.rx.iter_mut().zip(storage.tx.iter_mut());
        let mut failed = false;
        let slots = core::array::from_fn(|_| {
            let handle = buffers
                .next()
                .and_then(|(rx, tx)| listening_socket(rx, tx, &config, sockets));
            failed |= handle.is_none();
            let mut conn = EchoConn::new();
            // Listening at once, so the first SYN finds a listener.
            conn.listening();
            Slot {
                handle: handle.unwrap_or_default(),
                conn,
                recycle: false,
            }
        });
        if failed {
            return Err(Error::SocketSetFull);
        }
        Ok(Self {
            config,
            slots,
            gate: GateState::new(config.port, config.overflow),
            counters: TcpCounters::default(),
            work_left: false,
            pressure_until: None,
        })
    }

    /// The settings the server runs with.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    /// The counters so far. `held_syns` and `refused` come from the SYN gate.
    pub fn counters(&self) -> TcpCounters {
        TcpCounters {
            held_syns: self.gate.held,
            refused: self.gate.refused,
            ..self.counters
        }
    }

    /// Slots serving a client right now.
    pub fn active_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.conn.is_active()).count()
    }

    /// The socket handles of the slots, in slot order.
    pub fn handles(&self) -> impl Iterator<Item = SocketHandle> + '_ {
        self.slots.iter().map(|s| s.handle)
    }

    /// Receive, echo and transmit: one pass of the interface through the SYN gate, with the
    /// slots served after every frame that changed a socket. Returns whether anything
    /// progressed.
    pub fn poll<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        self.pump(now, iface, device, sockets, |_| false)
    }

    /// The poll loop shared with [`EchoNode`](crate::EchoNode): `also` serves the node's
    /// other services at the same points as the slots.
    ///
    /// Frames are taken one at a time (`poll_ingress_single`). When a frame changed a socket
    /// and some slot may free up, the slots are served before the next frame, so a slot
    /// freed by one frame (the ACK of our FIN) listens again before the next one (a client's
    /// new SYN): back-to-back connections never meet a missing listener. Echo work otherwise
    /// waits for the end of the batch, then egress is drained. A free listener goes to the
    /// oldest SYN in the listen backlog before any new frame.
    pub(crate) fn pump<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
        mut also: impl FnMut(&mut SocketSet<'_>) -> bool,
    ) -> bool {
        iface.poll_maintenance(now);
        self.gate.now = now;
        let mut progressed = self.service(now, sockets) | also(sockets);
        self.work_left = true;
        // The gate's budget is the number of listening slots, counted when a slot may have
        // started listening (after a service pass or a recycle) and decremented by the gate
        // for every SYN it lets through: exact, without a scan before every frame.
        let mut recount = true;
        for _ in 0..MAX_FRAMES_PER_POLL {
            if recount {
                self.gate.budget = self.listening(sockets);
                recount = false;
            }
            // A free listener goes to the oldest held SYN first, as in a listen backlog.
            if self.gate.budget > 0
                && let Some(held) = self.gate.take_held()
            {
                if !self.talks_to(held.source, sockets) {
                    iface.poll_ingress_single(now, &mut Replay::new(device, &held.frame), sockets);
                    self.service(now, sockets);
                    progressed = true;
                }
                recount = true;
                continue;
            }
            self.gate.recyclable = self.gate.budget == 0 && self.reclaimable(now).is_some();
            let mut gated = SynGate::new(device, &mut self.gate);
            let mut result = iface.poll_ingress_single(now, &mut gated, sockets);
            if let Some(syn) = self.gate.take_pending() {
                result = self.recycle_for(now, iface, device, sockets, &syn);
                recount = true;
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
                    // may be a SYN); echo work waits for the end of the batch.
                    if self.slots.iter().any(|s| s.conn.may_free()) {
                        self.service(now, sockets);
                        recount = true;
                    }
                }
            }
        }
        progressed |= self.service(now, sockets) | also(sockets);
        // Transmit everything (smoltcp sends at most one packet per socket per
        // `poll_egress`), then serve again: egress frees transmit room for more echo, and can
        // change a socket's state (a retransmission timeout, an RST sent).
        let mut budget = MAX_FRAMES_PER_POLL;
        while budget > 0 {
            let mut sent = false;
            while budget > 0 && iface.poll_egress(now, device, sockets) != PollResult::None {
                sent = true;
                budget = budget.saturating_sub(1);
            }
            progressed |= sent;
            if !sent || !(self.service(now, sockets) | also(sockets)) {
                break;
            }
        }
        // Held SYNs and a free listener: poll again at once.
        if self.gate.backlog_len() > 0 && self.listening(sockets) > 0 {
            self.work_left = true;
        }
        progressed
    }

    /// Whether some slot already has a connection with `peer` (a held SYN's client that got
    /// in by a retransmission meanwhile).
    fn talks_to(&self, peer: IpEndpoint, sockets: &mut SocketSet<'_>) -> bool {
        self.slots.iter().any(|s| {
            find_mut::<tcp::Socket>(sockets, s.handle).and_then(|socket| socket.remote_endpoint())
                == Some(peer)
        })
    }

    /// Whether half-open slots may be recycled for new SYNs (the SYN-flood defence).
    ///
    /// Pressure starts when no slot is free and every slot not serving a client has been
    /// half-open for [`SYN_PRESSURE_AFTER`]: real handshakes complete within a round trip, so
    /// stale half-open slots filling the rest of the pool mean SYNs from hosts that do not
    /// answer. It lasts [`SYN_PRESSURE_HOLD`] after it was last
    /// seen. A legitimate burst of more clients than slots never triggers it and keeps the
    /// plain `Overflow` behaviour, so no real handshake in flight is thrown away.
    fn under_syn_pressure(&mut self, now: Instant) -> bool {
        // The youngest half-open slot, if no slot is free; slots serving clients do not count.
        let mut youngest: Option<Instant> = None;
        let mut free = false;
        for slot in &self.slots {
            match slot.conn.phase() {
                Phase::HalfOpen { since } => {
                    youngest = Some(youngest.map_or(since, |y: Instant| y.max(since)));
                }
                Phase::Unbound | Phase::Listening => free = true,
                _ => {}
            }
        }
        if let Some(youngest) = youngest
            && !free
            && crate::conn::elapsed(youngest, now) >= SYN_PRESSURE_AFTER
        {
            self.pressure_until = Some(crate::conn::later(now, SYN_PRESSURE_HOLD));
        }
        match self.pressure_until {
            Some(until) if now < until => self.oldest_half_open().is_some(),
            _ => false,
        }
    }

    /// The slot a SYN that finds no listener may take: under SYN pressure the oldest
    /// half-open slot, otherwise the longest idle holder of at least [`IDLE_HOLDER_AFTER`].
    fn reclaimable(&mut self, now: Instant) -> Option<usize> {
        if self.under_syn_pressure(now) {
            return self.oldest_half_open();
        }
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.conn.idle_holder_since().map(|since| (since, i)))
            .filter(|(since, _)| crate::conn::elapsed(*since, now) >= IDLE_HOLDER_AFTER)
            .min()
            .map(|(_, i)| i)
    }

    /// Whether taking slot `i` for a SYN from `requester` would be an idle holder evicting
    /// another: a peer that already holds a silent connection may not take a slot from one.
    /// Without this rule, idle holders that keep retrying their SYNs (they arrive first, on the
    /// same schedule) would evict each other for ever while a new client waits.
    fn evicts_own_kind(
        &self,
        i: usize,
        requester: Option<IpAddress>,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        let evicting = self
            .slots
            .get(i)
            .is_some_and(|s| s.conn.idle_holder_since().is_some());
        let Some(requester) = requester else {
            return false;
        };
        evicting
            && self.slots.iter().any(|s| {
                s.conn.idle_holder_since().is_some()
                    && find_mut::<tcp::Socket>(sockets, s.handle)
                        .and_then(|socket| socket.remote_endpoint())
                        .is_some_and(|peer| peer.addr == requester)
            })
    }

    /// The slot whose handshake has waited longest.
    fn oldest_half_open(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.conn.phase() {
                Phase::HalfOpen { since } => Some((since, i)),
                _ => None,
            })
            .min()
            .map(|(_, i)| i)
    }

    /// Give a reclaimable slot to the SYN the gate kept, and hand that SYN to the interface.
    /// A dropped half-open connection gets no RST (its SYN most likely came from a host that
    /// will never answer); an evicted idle holder does.
    fn recycle_for<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
        syn: &[u8],
    ) -> PollIngressSingleResult {
        let config = self.config;
        let requester = crate::gate::source_address(device.capabilities().medium, syn);
        let Some(slot) = self
            .reclaimable(now)
            .filter(|&i| !self.evicts_own_kind(i, requester, sockets))
            .and_then(|i| self.slots.get_mut(i))
        else {
            bump(&mut self.gate.held, 1);
            return PollIngressSingleResult::PacketProcessed;
        };
        if let Some(event) = slot.conn.evict() {
            // An idle holder has a live peer: tell it with an RST before the slot is reused.
            if let Some(socket) = find_mut::<tcp::Socket>(sockets, slot.handle) {
                socket.abort();
            }
            iface.poll_egress(now, device, sockets);
            count(&mut self.counters, event);
        } else {
            bump(&mut self.counters.half_open_recycled, 1);
        }
        if !recycle_slot(slot, sockets, &config) {
            bump(&mut self.gate.held, 1);
            return PollIngressSingleResult::SocketStateChanged;
        }
        match iface.poll_ingress_single(now, &mut Replay::new(device, syn), sockets) {
            // The replay device had no transmit token to offer: the SYN is lost, as if held.
            PollIngressSingleResult::None => {
                bump(&mut self.gate.held, 1);
                PollIngressSingleResult::SocketStateChanged
            }
            _ => PollIngressSingleResult::SocketStateChanged,
        }
    }

    /// Serve every slot once: echo what can be echoed, close, abort or re-listen. Returns
    /// whether any slot did something.
    pub fn service(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let mut progressed = false;
        let mut recycle = false;
        // Pressure that has run out is forgotten, so deadlines go back to normal.
        if self.pressure_until.is_some_and(|until| now >= until) {
            self.pressure_until = None;
        }
        let config = TcpConfig {
            timeouts: self.timeouts(Some(now)),
            ..self.config
        };
        for slot in self.slots.iter_mut() {
            let Some(socket) = find_mut::<tcp::Socket>(sockets, slot.handle) else {
                continue;
            };
            progressed |= drive(slot, socket, now, &config, &mut self.counters);
            recycle |= slot.recycle;
        }
        if recycle {
            for slot in self.slots.iter_mut().filter(|s| s.recycle) {
                recycle_slot(slot, sockets, &self.config);
            }
        }
        progressed
    }

    /// The earliest instant at which a slot needs service without network activity.
    /// `Instant::ZERO` (at once) when the last poll left frames in the device.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.work_left {
            return Some(Instant::ZERO);
        }
        let timeouts = self.timeouts(None);
        self.slots
            .iter()
            .filter_map(|s| s.conn.deadline(&timeouts))
            .min()
    }

    /// The timeouts in force: under SYN pressure a half-open connection lives at most
    /// [`SYN_PRESSURE_HANDSHAKE`]. Stale half-open slots are not only useless then: each one
    /// keeps asking smoltcp to resolve its (absent) peer, and smoltcp sends one neighbour
    /// request a second for the whole interface, so they would delay a real client's answer
    /// whenever its address has dropped out of the small neighbour cache. `now: None` assumes
    /// the pressure still holds (for deadlines: at worst one early poll).
    fn timeouts(&self, now: Option<Instant>) -> Timeouts {
        let pressured = match (self.pressure_until, now) {
            (Some(until), Some(now)) => now < until,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let mut timeouts = self.config.timeouts;
        if pressured {
            timeouts.handshake = Some(match timeouts.handshake {
                Some(limit) if limit < SYN_PRESSURE_HANDSHAKE => limit,
                _ => SYN_PRESSURE_HANDSHAKE,
            });
        }
        timeouts
    }

    /// How many slots' sockets are in LISTEN now.
    fn listening(&self, sockets: &mut SocketSet<'_>) -> usize {
        self.slots
            .iter()
            .filter(|s| s.conn.phase() == Phase::Listening)
            .filter(|s| {
                find_mut::<tcp::Socket>(sockets, s.handle)
                    .is_some_and(|socket| socket.state() == tcp::State::Listen)
            })
            .count()
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
    configure(&mut socket, config);
    // Fails only on port 0, which `new` rejected.
    socket.listen(config.port).ok()?;
    sockets.add(socket).ok()
}

fn configure(socket: &mut tcp::Socket<'_>, config: &TcpConfig) {
    // An echo answers what it gets at once; Nagle would hold small echoes for an ACK.
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(config.ack_delay);
    socket.set_keep_alive(config.keep_alive);
}

/// Step one slot until it has nothing more to do (bounded). Returns whether it acted.
fn drive(
    slot: &mut Slot,
    socket: &mut tcp::Socket<'_>,
    now: Instant,
    config: &TcpConfig,
    counters: &mut TcpCounters,
) -> bool {
    let mut acted = false;
    for _ in 0..STEPS_PER_POLL {
        let step = slot.conn.step(now, observe(socket), &config.timeouts);
        if let Some(event) = step.event {
            diag!("smolecho: tcp/{} {:?}", config.port, event);
            count(counters, event);
        }
        match step.action {
            Action::Wait => break,
            Action::Listen => {
                // listen() only fails on port 0 (checked at construction) or an open socket,
                // which the state machine never asks for.
                if socket.listen(config.port).is_err() {
                    socket.abort();
                    break;
                }
                configure(socket, config);
                slot.conn.listening();
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
    acted
}

/// Put a slot's socket back to listening without an RST, in a fresh socket-set entry.
///
/// smoltcp keeps some per-socket state in the set's entry rather than in the socket: after
/// failing to reach a neighbour it silences the socket for a second. A half-open connection
/// from a spoofed address leaves its entry silenced, and a real client landing on the same
/// socket would wait out that second. Removing the socket and adding it back gives it a
/// fresh entry. Returns whether the slot listens again.
fn recycle_slot(slot: &mut Slot, sockets: &mut SocketSet<'_>, config: &TcpConfig) -> bool {
    slot.recycle = false;
    // Checked first, so `remove` below cannot panic: the handle is in the set and is TCP.
    if find_mut::<tcp::Socket>(sockets, slot.handle).is_none() {
        return false;
    }
    let Socket::Tcp(mut socket) = sockets.remove(slot.handle) else {
        return false;
    };
    // abort() then listen(): listen() resets the socket, so no RST is ever sent.
    socket.abort();
    let listening = socket.listen(config.port).is_ok();
    configure(&mut socket, config);
    // The entry just freed is there for it: `add` cannot find the set full.
    slot.handle = sockets.add(socket);
    if listening {
        slot.conn.listening();
    }
    listening
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
