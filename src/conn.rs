//! The per-connection echo state machine, free of smoltcp sockets.
//!
//! One [`EchoConn`] drives one connection slot of the TCP echo server. The glue in
//! [`tcp_server`](crate::tcp_server) reads the slot's socket into an [`Observation`], asks
//! [`EchoConn::step`] what to do, carries out the returned [`Action`] and reports moved bytes
//! with [`EchoConn::echoed`]. Every decision the server makes about a connection (when to
//! echo, when to close, when to give up on a peer) is made here, so it can be tested with
//! plain values.
//!
//! ```text
//!            Listen                 SYN seen               handshake done
//!  Unbound ──────────▶ Listening ───────────▶ HalfOpen ───────────────────▶ Echoing
//!     ▲                                          │ handshake timeout            │ peer FIN
//!     │  RST sent (or grace over)                ▼                              ▼
//!     └──────────────────────────────────── Aborting ◀── idle timeout ──── Draining
//!     ▲                                                                         │ all echoed
//!     │                   peer ACKed our FIN                                    ▼
//!     └─────────────────────────────────────────────────────────────────── Closing
//! ```
//!
//! A peer RST, seen in any connected phase, sends the slot straight back to listening.

use smoltcp::time::{Duration, Instant};

/// How long an aborted slot waits for smoltcp to send its RST before it listens again anyway.
pub const RST_GRACE: Duration = Duration::from_millis(500);

/// What the glue saw of the slot's socket, reduced to what the echo logic needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Link {
    /// Waiting for a SYN (TCP LISTEN).
    Listening,
    /// A SYN arrived and our SYN-ACK is out (TCP SYN-RECEIVED or SYN-SENT).
    Handshake,
    /// Both directions open (TCP ESTABLISHED).
    Open,
    /// The peer sent FIN; we may still send (TCP CLOSE-WAIT).
    PeerClosed,
    /// Our FIN is out and not yet acknowledged (FIN-WAIT, CLOSING, LAST-ACK).
    Finishing,
    /// The connection is over and the socket can listen again (TIME-WAIT, or CLOSED with nothing
    /// left to send).
    Done,
    /// The socket was aborted and its RST is still queued (CLOSED with a peer attached).
    ResetPending,
}

/// One look at a slot's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Observation {
    /// The socket's connection state.
    pub link: Link,
    /// Bytes received and not yet taken by the application.
    pub rx_queued: usize,
    /// Bytes queued for sending and not yet acknowledged by the peer.
    pub tx_queued: usize,
    /// Room left in the transmit buffer.
    pub tx_free: usize,
}

/// Time limits applied to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timeouts {
    /// Abort a connection after this long without a byte moving in either direction
    /// (`None`: never).
    pub idle: Option<Duration>,
    /// Abort a connection that stays half-open (SYN-RECEIVED) this long (`None`: never).
    pub handshake: Option<Duration>,
}

impl Timeouts {
    /// 60 s idle timeout and 5 s handshake timeout.
    pub const DEFAULT: Self = Self {
        idle: Some(Duration::from_secs(60)),
        handshake: Some(Duration::from_secs(5)),
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the glue must do to the socket after a [`step`](EchoConn::step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Nothing to do now.
    Wait,
    /// Put the socket back into LISTEN on the service port.
    Listen,
    /// Move up to `max` bytes from the receive buffer to the transmit buffer.
    Echo {
        /// Never more than what is queued or than what fits.
        max: usize,
    },
    /// Everything the peer sent has been echoed after its FIN: send ours.
    Close,
    /// Drop the connection with an RST.
    Abort,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseReason {
    /// FIN exchanged both ways after every byte was echoed.
    Graceful,
    /// The peer reset the connection.
    Reset,
    /// No byte moved for the idle timeout; we aborted.
    IdleTimeout,
}

/// Something worth counting that a [`step`](EchoConn::step) observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// A handshake completed: the slot now serves a client.
    Accepted,
    /// A served connection ended.
    Closed(CloseReason),
    /// A half-open connection outlived the handshake timeout and was dropped.
    HandshakeTimeout,
}

/// The result of one [`step`](EchoConn::step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Step {
    /// What to do to the socket.
    pub action: Action,
    /// What happened, if anything worth counting.
    pub event: Option<Event>,
}

impl Step {
    const fn act(action: Action) -> Self {
        Self {
            action,
            event: None,
        }
    }

    const fn with(action: Action, event: Event) -> Self {
        Self {
            action,
            event: Some(event),
        }
    }
}

/// Where a slot is in its life. Timestamps live in the phase that needs them, so a deadline
/// can only exist where it means something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// Not listening yet (fresh, or just finished): the next step asks to listen.
    Unbound,
    /// Listening for a SYN.
    Listening,
    /// SYN received at `since`, handshake not complete.
    HalfOpen {
        /// When the SYN was first seen.
        since: Instant,
    },
    /// Serving a client: echoing both ways.
    Echoing,
    /// The peer sent FIN: echoing what is left before closing.
    Draining,
    /// Our FIN is out: waiting for the peer's ACK.
    Closing,
    /// Aborted at `since`: waiting for the RST to leave.
    Aborting {
        /// When the abort was issued.
        since: Instant,
    },
}

/// The echo state machine of one connection slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EchoConn {
    phase: Phase,
    /// Last time a byte moved, for the idle timeout.
    last_activity: Instant,
    /// `(rx_queued, tx_queued)` at the previous step: a change means bytes moved on the wire.
    last_queues: (usize, usize),
}

impl Default for EchoConn {
    fn default() -> Self {
        Self::new()
    }
}

impl EchoConn {
    /// A slot that is not listening yet.
    pub const fn new() -> Self {
        Self {
            phase: Phase::Unbound,
            last_activity: Instant::ZERO,
            last_queues: (0, 0),
        }
    }

    /// The current phase.
    pub const fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the slot is serving a client (handshake complete, not yet closed).
    pub const fn is_active(&self) -> bool {
        matches!(
            self.phase,
            Phase::Echoing | Phase::Draining | Phase::Closing
        )
    }

    /// Decide what to do with the slot now.
    pub fn step(&mut self, now: Instant, obs: Observation, timeouts: &Timeouts) -> Step {
        match self.phase {
            Phase::Unbound => self.listen_step(obs),
            Phase::Listening => match obs.link {
                Link::Listening => Step::act(Action::Wait),
                Link::Handshake => {
                    self.phase = Phase::HalfOpen { since: now };
                    self.handshake_step(now, now, timeouts)
                }
                Link::Open | Link::PeerClosed | Link::Finishing => self.accept(now, obs, timeouts),
                // Someone closed the socket under us: listen again.
                Link::Done | Link::ResetPending => self.listen_step(obs),
            },
            Phase::HalfOpen { since } => match obs.link {
                Link::Handshake => self.handshake_step(now, since, timeouts),
                Link::Open | Link::PeerClosed | Link::Finishing => self.accept(now, obs, timeouts),
                // smoltcp returns a listener that got an RST in SYN-RECEIVED to LISTEN.
                Link::Listening => {
                    self.phase = Phase::Listening;
                    Step::act(Action::Wait)
                }
                Link::Done | Link::ResetPending => self.listen_step(obs),
            },
            Phase::Echoing | Phase::Draining => self.echo_step(now, obs, timeouts),
            Phase::Closing => match obs.link {
                Link::Done => {
                    self.phase = Phase::Unbound;
                    let step = self.listen_step(obs);
                    Step::with(step.action, Event::Closed(CloseReason::Graceful))
                }
                Link::ResetPending | Link::Listening | Link::Handshake => self.peer_reset(now, obs),
                Link::Open | Link::PeerClosed | Link::Finishing => {
                    self.note_activity(now, obs);
                    self.idle_check(now, timeouts)
                }
            },
            Phase::Aborting { since } => match obs.link {
                Link::Done => self.listen_step(obs),
                _ if elapsed(since, now) >= RST_GRACE => {
                    self.phase = Phase::Unbound;
                    self.listen_step(obs)
                }
                _ => Step::act(Action::Wait),
            },
        }
    }

    /// Record that the glue moved `n` bytes from receive to transmit buffer.
    pub fn echoed(&mut self, now: Instant, n: usize) {
        if n > 0 {
            self.last_activity = now;
            let (rx, tx) = self.last_queues;
            self.last_queues = (rx.saturating_sub(n), tx.saturating_add(n));
        }
    }

    /// Tell the machine that the socket is listening again (after [`Action::Listen`] succeeded).
    pub fn listening(&mut self) {
        self.phase = Phase::Listening;
    }

    /// The earliest instant at which [`step`](Self::step) may decide something new without a
    /// change on the socket, or `None` when only socket activity can change anything.
    pub fn deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        match self.phase {
            Phase::Unbound => Some(Instant::ZERO),
            Phase::Listening => None,
            Phase::HalfOpen { since } => timeouts.handshake.map(|t| later(since, t)),
            Phase::Echoing | Phase::Draining | Phase::Closing => {
                timeouts.idle.map(|t| later(self.last_activity, t))
            }
            Phase::Aborting { since } => Some(later(since, RST_GRACE)),
        }
    }

    fn listen_step(&mut self, obs: Observation) -> Step {
        self.phase = Phase::Unbound;
        match obs.link {
            Link::Listening => {
                self.phase = Phase::Listening;
                Step::act(Action::Wait)
            }
            // The glue calls `listening()` once LISTEN succeeded.
            _ => Step::act(Action::Listen),
        }
    }

    fn handshake_step(&mut self, now: Instant, since: Instant, timeouts: &Timeouts) -> Step {
        match timeouts.handshake {
            Some(limit) if elapsed(since, now) >= limit => {
                self.phase = Phase::Aborting { since: now };
                Step::with(Action::Abort, Event::HandshakeTimeout)
            }
            _ => Step::act(Action::Wait),
        }
    }

    fn accept(&mut self, now: Instant, obs: Observation, timeouts: &Timeouts) -> Step {
        self.phase = Phase::Echoing;
        self.last_activity = now;
        self.last_queues = (obs.rx_queued, obs.tx_queued);
        let step = self.echo_step(now, obs, timeouts);
        // A connection that ends in the very step it is accepted still counts as accepted;
        // its end is reported by the next step.
        match step.event {
            None => Step::with(step.action, Event::Accepted),
            Some(_) => step,
        }
    }

    fn echo_step(&mut self, now: Instant, obs: Observation, timeouts: &Timeouts) -> Step {
        match obs.link {
            Link::Open => {
                self.note_activity(now, obs);
                self.phase = Phase::Echoing;
                self.echo_or_idle(now, obs, timeouts)
            }
            Link::PeerClosed => {
                self.note_activity(now, obs);
                self.phase = Phase::Draining;
                if obs.rx_queued == 0 {
                    self.phase = Phase::Closing;
                    Step::act(Action::Close)
                } else {
                    self.echo_or_idle(now, obs, timeouts)
                }
            }
            // Our side never closes while echoing, so a closing socket means it was closed for
            // us; treat it like our own close.
            Link::Finishing => {
                self.note_activity(now, obs);
                self.phase = Phase::Closing;
                self.idle_check(now, timeouts)
            }
            Link::Done | Link::ResetPending | Link::Listening | Link::Handshake => {
                self.peer_reset(now, obs)
            }
        }
    }

    fn echo_or_idle(&mut self, now: Instant, obs: Observation, timeouts: &Timeouts) -> Step {
        let max = obs.rx_queued.min(obs.tx_free);
        if max > 0 {
            Step::act(Action::Echo { max })
        } else {
            self.idle_check(now, timeouts)
        }
    }

    fn idle_check(&mut self, now: Instant, timeouts: &Timeouts) -> Step {
        match timeouts.idle {
            Some(limit) if elapsed(self.last_activity, now) >= limit => {
                self.phase = Phase::Aborting { since: now };
                Step::with(Action::Abort, Event::Closed(CloseReason::IdleTimeout))
            }
            _ => Step::act(Action::Wait),
        }
    }

    fn peer_reset(&mut self, now: Instant, obs: Observation) -> Step {
        let step = match obs.link {
            Link::ResetPending => {
                self.phase = Phase::Aborting { since: now };
                Step::act(Action::Wait)
            }
            _ => self.listen_step(obs),
        };
        Step::with(step.action, Event::Closed(CloseReason::Reset))
    }

    fn note_activity(&mut self, now: Instant, obs: Observation) {
        let queues = (obs.rx_queued, obs.tx_queued);
        if queues != self.last_queues {
            self.last_queues = queues;
            self.last_activity = now;
        }
    }
}

/// `now - since`, zero if the clock went backwards.
pub(crate) fn elapsed(since: Instant, now: Instant) -> Duration {
    Duration::from_micros(
        u64::try_from(now.total_micros().saturating_sub(since.total_micros())).unwrap_or(0),
    )
}

/// `t + d`, saturating instead of overflowing on absurd values.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    let d = i64::try_from(d.total_micros()).unwrap_or(i64::MAX);
    Instant::from_micros(t.total_micros().saturating_add(d))
}
