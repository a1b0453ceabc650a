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
//!     ▲                                          │ handshake timeout:           │ peer FIN
//!     ├──────────────────────────────────────────┘ recycled, no RST             ▼
//!     │  RST sent (or grace over)                                               │
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
    /// Forget a half-open connection without an RST and listen again at once. Its peer never
    /// completed the handshake (and, in a SYN flood, may not exist), so there is nobody to
    /// tell. The glue calls [`EchoConn::listening`] once the socket listens.
    Recycle,
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
    /// The peer never sent a byte, and its slot was given to a new client (RST).
    Evicted,
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
    /// The peer has sent at least one byte on this connection.
    heard: bool,
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
            heard: false,
        }
    }

    /// A machine already in `phase` (unit tests of the policies that read it).
    #[cfg(test)]
    pub(crate) const fn in_phase(phase: Phase, heard: bool, since: Instant) -> Self {
        Self {
            phase,
            last_activity: since,
            last_queues: (0, 0),
            heard,
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

    /// Whether the slot may become free (listen again) at its next step.
    pub const fn may_free(&self) -> bool {
        matches!(
            self.phase,
            Phase::Closing | Phase::Aborting { .. } | Phase::Unbound
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
            self.heard = true;
            self.last_activity = now;
            let (rx, tx) = self.last_queues;
            self.last_queues = (rx.saturating_sub(n), tx.saturating_add(n));
        }
    }

    /// When this connection became an *idle holder*: accepted, and not a single byte (nor a
    /// FIN) from the peer since. `None` for every other connection.
    pub fn idle_holder_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::Echoing if !self.heard => Some(self.last_activity),
            _ => None,
        }
    }

    /// The server takes this idle holder's slot for a new client: the glue aborts the
    /// connection (RST) and listens again. Returns the event to count, or `None` when the
    /// connection is not an idle holder (then nothing changes).
    pub fn evict(&mut self) -> Option<Event> {
        self.idle_holder_since()?;
        self.phase = Phase::Unbound;
        Some(Event::Closed(CloseReason::Evicted))
    }

    /// Tell the machine that the socket is listening again (after [`Action::Listen`] succeeded).
    pub fn listening(&mut self) {
        self.phase = Phase::Listening;
    }

    /// The earliest instant at which [`step`](Self::step) may decide something new without a
    /// change on the socket, or `None` when only socket activity can change anything.
    pub fn deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        let (since, limit) = match self.phase {
            Phase::Unbound => return Some(Instant::ZERO),
            Phase::Listening => return None,
            Phase::HalfOpen { since } => (since, timeouts.handshake?),
            Phase::Echoing | Phase::Draining | Phase::Closing => {
                (self.last_activity, timeouts.idle?)
            }
            Phase::Aborting { since } => (since, RST_GRACE),
        };
        Some(later(since, limit))
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
                self.phase = Phase::Unbound;
                Step::with(Action::Recycle, Event::HandshakeTimeout)
            }
            _ => Step::act(Action::Wait),
        }
    }

    fn accept(&mut self, now: Instant, obs: Observation, timeouts: &Timeouts) -> Step {
        self.phase = Phase::Echoing;
        self.last_activity = now;
        self.last_queues = (obs.rx_queued, obs.tx_queued);
        self.heard = obs.rx_queued > 0;
        // The idle clock starts now, so it cannot run out in this step (it could only with a
        // zero limit): the step reports the accept, and any end comes with a later step.
        let fresh = Timeouts {
            idle: None,
            ..*timeouts
        };
        let step = self.echo_step(now, obs, &fresh);
        Step::with(step.action, Event::Accepted)
    }

    fn echo_step(&mut self, now: Instant, obs: Observation, timeouts: &Timeouts) -> Step {
        self.phase = match obs.link {
            Link::Open => Phase::Echoing,
            Link::PeerClosed if obs.rx_queued == 0 => Phase::Closing,
            Link::PeerClosed => Phase::Draining,
            // Our side never closes while echoing, so a closing socket means it was closed for
            // us; treat it like our own close.
            Link::Finishing => Phase::Closing,
            Link::Done | Link::ResetPending | Link::Listening | Link::Handshake => {
                return self.peer_reset(now, obs);
            }
        };
        self.note_activity(now, obs);
        let max = obs.rx_queued.min(obs.tx_free);
        match obs.link {
            // The peer's FIN, and everything before it echoed: send ours.
            Link::PeerClosed if obs.rx_queued == 0 => Step::act(Action::Close),
            Link::Open | Link::PeerClosed if max > 0 => Step::act(Action::Echo { max }),
            _ => self.idle_check(now, timeouts),
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
        self.heard |= obs.rx_queued > 0 || obs.link == Link::PeerClosed;
        let queues = (obs.rx_queued, obs.tx_queued);
        if queues != self.last_queues {
            self.last_queues = queues;
            self.last_activity = now;
        }
    }
}

/// `now - since`, zero if the clock went backwards.
pub(crate) fn elapsed(since: Instant, now: Instant) -> Duration {
    let (since, now) = (since.total_micros(), now.total_micros());
    // A positive difference of two i64 always fits a u64: the wrapped difference is exact
    // (cheaper than saturating, which costs overflow checks on 32-bit targets).
    Duration::from_micros(if now > since {
        now.wrapping_sub(since) as u64
    } else {
        0
    })
}

/// `t + d`, saturating instead of overflowing on absurd values.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    let (t, d) = (t.total_micros(), d.total_micros());
    // As in `elapsed`: the room left above `t` fits a u64 exactly, and below it the wrapped
    // sum is exact.
    let room = i64::MAX.wrapping_sub(t) as u64;
    Instant::from_micros(if d < room {
        t.wrapping_add(d as i64)
    } else {
        i64::MAX
    })
}

/// The earlier of two deadlines (`None`: no deadline). Smaller in flash than collecting
/// options into an iterator's `min`.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        idle: Some(Duration::from_secs(10)),
        handshake: Some(Duration::from_secs(2)),
    };

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n as i64)
    }

    fn obs(link: Link, rx_queued: usize, tx_queued: usize, tx_free: usize) -> Observation {
        Observation {
            link,
            rx_queued,
            tx_queued,
            tx_free,
        }
    }

    fn at(link: Link) -> Observation {
        obs(link, 0, 0, 100)
    }

    /// A machine that has accepted a connection at t = 0.
    fn echoing() -> EchoConn {
        let mut c = listening();
        let step = c.step(ms(0), at(Link::Open), &T);
        assert_eq!(step.event, Some(Event::Accepted));
        assert_eq!(c.phase(), Phase::Echoing);
        c
    }

    fn listening() -> EchoConn {
        let mut c = EchoConn::new();
        assert_eq!(c.step(ms(0), at(Link::Done), &T).action, Action::Listen);
        c.listening();
        assert_eq!(c.phase(), Phase::Listening);
        c
    }

    #[test]
    fn a_fresh_slot_asks_to_listen_and_waits_once_listening() {
        let mut c = EchoConn::new();
        assert_eq!(c.phase(), Phase::Unbound);
        assert_eq!(c.deadline(&T), Some(Instant::ZERO), "needs service at once");
        assert_eq!(c.step(ms(0), at(Link::Done), &T), Step::act(Action::Listen));
        c.listening();
        assert_eq!(
            c.step(ms(1), at(Link::Listening), &T),
            Step::act(Action::Wait)
        );
        assert_eq!(c.deadline(&T), None, "a listener has no deadline");
    }

    #[test]
    fn an_unbound_slot_that_is_already_listening_just_records_it() {
        let mut c = EchoConn::new();
        assert_eq!(
            c.step(ms(0), at(Link::Listening), &T),
            Step::act(Action::Wait)
        );
        assert_eq!(c.phase(), Phase::Listening);
    }

    #[test]
    fn syn_then_handshake_completion_accepts() {
        let mut c = listening();
        assert_eq!(
            c.step(ms(5), at(Link::Handshake), &T),
            Step::act(Action::Wait)
        );
        assert_eq!(c.phase(), Phase::HalfOpen { since: ms(5) });
        assert_eq!(c.deadline(&T), Some(ms(2005)));
        let step = c.step(ms(6), obs(Link::Open, 10, 0, 100), &T);
        assert_eq!(step, Step::with(Action::Echo { max: 10 }, Event::Accepted));
        assert!(c.is_active());
    }

    #[test]
    fn a_half_open_connection_is_dropped_after_the_handshake_timeout() {
        let mut c = listening();
        c.step(ms(0), at(Link::Handshake), &T);
        assert_eq!(
            c.step(ms(1999), at(Link::Handshake), &T).action,
            Action::Wait
        );
        let step = c.step(ms(2000), at(Link::Handshake), &T);
        assert_eq!(step, Step::with(Action::Recycle, Event::HandshakeTimeout));
        assert_eq!(c.phase(), Phase::Unbound);
        // The glue re-listens at once, without an RST.
        c.listening();
        assert_eq!(
            c.step(ms(2001), at(Link::Listening), &T).action,
            Action::Wait
        );
    }

    #[test]
    fn rst_in_syn_received_returns_to_listening_without_an_event() {
        let mut c = listening();
        c.step(ms(0), at(Link::Handshake), &T);
        assert_eq!(
            c.step(ms(1), at(Link::Listening), &T),
            Step::act(Action::Wait)
        );
        assert_eq!(c.phase(), Phase::Listening);
    }

    #[test]
    fn a_half_open_socket_closed_under_us_listens_again_without_counting_a_close() {
        let mut c = listening();
        c.step(ms(0), at(Link::Handshake), &T);
        assert_eq!(c.step(ms(1), at(Link::Done), &T), Step::act(Action::Listen));
    }

    #[test]
    fn without_a_handshake_timeout_a_half_open_slot_waits_forever() {
        let t = Timeouts {
            handshake: None,
            ..T
        };
        let mut c = listening();
        c.step(ms(0), at(Link::Handshake), &t);
        assert_eq!(
            c.step(ms(1_000_000), at(Link::Handshake), &t).action,
            Action::Wait
        );
        assert_eq!(c.deadline(&t), None);
    }

    #[test]
    fn echo_moves_no_more_than_queued_or_than_fits() {
        for rx in [0usize, 1, 7, 100, 5000] {
            for free in [0usize, 1, 7, 100, 5000] {
                let mut c = echoing();
                let step = c.step(ms(1), obs(Link::Open, rx, 0, free), &T);
                match step.action {
                    Action::Echo { max } => {
                        assert!(max > 0 && max <= rx && max <= free, "{rx} {free} {max}");
                        assert_eq!(max, rx.min(free));
                    }
                    Action::Wait => assert_eq!(rx.min(free), 0),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    #[test]
    fn backpressure_waits_while_the_transmit_buffer_is_full() {
        let mut c = echoing();
        assert_eq!(
            c.step(ms(1), obs(Link::Open, 500, 100, 0), &T),
            Step::act(Action::Wait)
        );
        assert_eq!(c.phase(), Phase::Echoing);
        // The peer reads: room appears, the echo resumes.
        assert_eq!(
            c.step(ms(2), obs(Link::Open, 500, 60, 40), &T).action,
            Action::Echo { max: 40 }
        );
    }

    #[test]
    fn idle_timeout_aborts_a_connection_where_nothing_moves() {
        let mut c = echoing();
        assert_eq!(c.deadline(&T), Some(ms(10_000)));
        assert_eq!(c.step(ms(9_999), at(Link::Open), &T).action, Action::Wait);
        let step = c.step(ms(10_000), at(Link::Open), &T);
        assert_eq!(
            step,
            Step::with(Action::Abort, Event::Closed(CloseReason::IdleTimeout))
        );
        assert!(!c.is_active());
        // The RST cannot leave yet: wait up to the grace time, then listen anyway.
        assert_eq!(
            c.step(ms(10_001), at(Link::ResetPending), &T).action,
            Action::Wait
        );
        assert_eq!(c.deadline(&T), Some(later(ms(10_000), RST_GRACE)));
        let grace_over = 10_000 + RST_GRACE.total_millis();
        assert_eq!(
            c.step(ms(grace_over), at(Link::ResetPending), &T).action,
            Action::Listen
        );
    }

    #[test]
    fn a_stalled_reader_is_also_reclaimed_by_the_idle_timeout() {
        let mut c = echoing();
        let full = obs(Link::Open, 2048, 2048, 0);
        assert_eq!(c.step(ms(1), full, &T).action, Action::Wait);
        assert_eq!(
            c.step(ms(10_001), full, &T).event,
            Some(Event::Closed(CloseReason::IdleTimeout))
        );
    }

    #[test]
    fn bytes_moving_either_way_keep_the_connection_alive() {
        let mut c = echoing();
        // Data arrives at 8 s (receive queue grows, nothing can be echoed).
        c.step(ms(8_000), obs(Link::Open, 10, 100, 0), &T);
        // The peer acknowledges at 16 s (transmit queue shrinks).
        assert_eq!(
            c.step(ms(16_000), obs(Link::Open, 10, 50, 0), &T).action,
            Action::Wait
        );
        // And we echo at 24 s.
        let step = c.step(ms(24_000), obs(Link::Open, 10, 50, 50), &T);
        assert_eq!(step.action, Action::Echo { max: 10 });
        c.echoed(ms(24_000), 10);
        assert_eq!(
            c.step(ms(33_999), obs(Link::Open, 0, 60, 40), &T).action,
            Action::Wait
        );
        assert_eq!(c.deadline(&T), Some(ms(34_000)));
    }

    #[test]
    fn half_close_echoes_everything_pending_then_closes() {
        let mut c = echoing();
        // FIN arrived with 300 bytes still queued and room for only 100.
        let step = c.step(ms(1), obs(Link::PeerClosed, 300, 0, 100), &T);
        assert_eq!(step.action, Action::Echo { max: 100 });
        assert_eq!(c.phase(), Phase::Draining);
        c.echoed(ms(1), 100);
        assert_eq!(
            c.step(ms(1), obs(Link::PeerClosed, 200, 100, 0), &T).action,
            Action::Wait,
            "no room: wait, do not close"
        );
        assert_eq!(
            c.step(ms(2), obs(Link::PeerClosed, 200, 0, 200), &T).action,
            Action::Echo { max: 200 }
        );
        c.echoed(ms(2), 200);
        assert_eq!(
            c.step(ms(2), obs(Link::PeerClosed, 0, 200, 0), &T).action,
            Action::Close
        );
        assert_eq!(c.phase(), Phase::Closing);
        assert_eq!(c.step(ms(3), at(Link::Finishing), &T).action, Action::Wait);
        let step = c.step(ms(4), at(Link::Done), &T);
        assert_eq!(
            step,
            Step::with(Action::Listen, Event::Closed(CloseReason::Graceful))
        );
    }

    #[test]
    fn a_fin_with_nothing_pending_closes_at_once() {
        let mut c = echoing();
        assert_eq!(
            c.step(ms(1), at(Link::PeerClosed), &T).action,
            Action::Close
        );
    }

    #[test]
    fn a_connection_accepted_with_its_fin_already_in_is_accepted_then_closed() {
        let mut c = listening();
        let step = c.step(ms(1), obs(Link::PeerClosed, 5, 0, 100), &T);
        assert_eq!(step, Step::with(Action::Echo { max: 5 }, Event::Accepted));
        c.echoed(ms(1), 5);
        assert_eq!(
            c.step(ms(1), obs(Link::PeerClosed, 0, 5, 95), &T).action,
            Action::Close
        );
    }

    #[test]
    fn time_wait_counts_as_done() {
        let mut c = echoing();
        c.step(ms(1), at(Link::PeerClosed), &T);
        assert_eq!(
            c.step(ms(2), at(Link::Done), &T).event,
            Some(Event::Closed(CloseReason::Graceful))
        );
    }

    #[test]
    fn a_close_the_peer_never_acknowledges_is_aborted_by_the_idle_timeout() {
        let mut c = echoing();
        c.step(ms(1), at(Link::PeerClosed), &T);
        assert_eq!(
            c.step(ms(5_000), at(Link::Finishing), &T).action,
            Action::Wait
        );
        assert_eq!(
            c.step(ms(10_001), at(Link::Finishing), &T),
            Step::with(Action::Abort, Event::Closed(CloseReason::IdleTimeout))
        );
    }

    #[test]
    fn rst_in_every_connected_phase_frees_the_slot_and_counts_a_reset() {
        let reset = Some(Event::Closed(CloseReason::Reset));
        // Echoing.
        let mut c = echoing();
        assert_eq!(
            c.step(ms(1), at(Link::Done), &T),
            Step::with(Action::Listen, Event::Closed(CloseReason::Reset))
        );
        // Draining (FIN seen, data pending, no room).
        let mut c = echoing();
        c.step(ms(1), obs(Link::PeerClosed, 10, 10, 0), &T);
        assert_eq!(c.phase(), Phase::Draining);
        assert_eq!(c.step(ms(2), at(Link::Done), &T).event, reset);
        // Closing.
        let mut c = echoing();
        c.step(ms(1), at(Link::PeerClosed), &T);
        assert_eq!(c.phase(), Phase::Closing);
        assert_eq!(c.step(ms(2), at(Link::ResetPending), &T).event, reset);
        // Reset noticed while our own RST is queued: wait for it before listening.
        let mut c = echoing();
        assert_eq!(
            c.step(ms(1), at(Link::ResetPending), &T).action,
            Action::Wait
        );
        assert!(matches!(c.phase(), Phase::Aborting { .. }));
    }

    #[test]
    fn our_own_close_seen_while_echoing_is_treated_as_closing() {
        let mut c = echoing();
        assert_eq!(c.step(ms(1), at(Link::Finishing), &T).action, Action::Wait);
        assert_eq!(c.phase(), Phase::Closing);
    }

    #[test]
    fn time_arithmetic_is_exact_up_to_the_ends_of_the_clock() {
        let (min, max) = (
            Instant::from_micros(i64::MIN),
            Instant::from_micros(i64::MAX),
        );
        let us = Duration::from_micros;
        assert_eq!(elapsed(ms(3), ms(5)), Duration::from_millis(2));
        assert_eq!(elapsed(ms(5), ms(3)), Duration::ZERO, "backwards");
        assert_eq!(elapsed(min, max), us(u64::MAX));
        assert_eq!(elapsed(max, min), Duration::ZERO);
        assert_eq!(later(ms(3), Duration::from_millis(2)), ms(5));
        assert_eq!(later(min, us(u64::MAX)), max, "exactly the top");
        assert_eq!(later(min, us(1)), Instant::from_micros(i64::MIN + 1));
        let minus5 = Instant::from_micros(-5);
        assert_eq!(
            later(minus5, us((1 << 63) + 3)),
            Instant::from_micros(i64::MAX - 1)
        );
        assert_eq!(later(minus5, us((1 << 63) + 4)), max);
        assert_eq!(later(max, us(1)), max, "saturates");
        assert_eq!(later(ms(1), us(u64::MAX)), max);
    }

    #[test]
    fn a_clock_that_goes_backwards_never_panics_nor_times_out() {
        let mut c = echoing();
        c.step(ms(50_000), obs(Link::Open, 1, 0, 0), &T);
        assert_eq!(
            c.step(ms(10), obs(Link::Open, 1, 0, 0), &T).action,
            Action::Wait
        );
        let far = Instant::from_micros(i64::MAX);
        let _ = c.step(far, at(Link::Open), &T);
        let _ = c.deadline(&Timeouts {
            idle: Some(Duration::from_micros(u64::MAX)),
            handshake: None,
        });
        let _ = c.step(Instant::from_micros(i64::MIN), at(Link::Open), &T);
    }

    #[test]
    fn only_a_connection_that_never_sent_a_byte_is_an_idle_holder() {
        let mut c = echoing();
        assert_eq!(c.idle_holder_since(), Some(ms(0)));
        c.step(ms(5), obs(Link::Open, 0, 0, 100), &T);
        assert_eq!(c.idle_holder_since(), Some(ms(0)), "nothing heard yet");
        c.step(ms(6), obs(Link::Open, 3, 0, 100), &T);
        assert_eq!(c.idle_holder_since(), None, "bytes arrived");
        assert_eq!(c.evict(), None, "a talking client is never evicted");
        assert!(c.is_active());
        // A FIN counts as hearing from the peer too.
        let mut c = echoing();
        c.step(ms(1), obs(Link::PeerClosed, 0, 0, 100), &T);
        assert_eq!(c.idle_holder_since(), None);
    }

    #[test]
    fn evicting_an_idle_holder_frees_the_slot_and_counts_it() {
        let mut c = echoing();
        assert_eq!(c.evict(), Some(Event::Closed(CloseReason::Evicted)));
        assert_eq!(c.phase(), Phase::Unbound);
        assert_eq!(c.evict(), None);
        assert_eq!(listening().evict(), None);
    }

    #[test]
    fn a_zero_idle_limit_still_reports_the_accept_before_the_timeout() {
        // Found by the `conn` fuzz target: the accept was lost, so the counters went negative.
        let t = Timeouts {
            idle: Some(Duration::from_micros(0)),
            ..T
        };
        let mut c = listening();
        assert_eq!(
            c.step(ms(1), at(Link::Open), &t),
            Step::with(Action::Wait, Event::Accepted)
        );
        assert_eq!(
            c.step(ms(1), at(Link::Open), &t),
            Step::with(Action::Abort, Event::Closed(CloseReason::IdleTimeout))
        );
    }

    #[test]
    fn no_idle_timeout_means_no_deadline() {
        let t = Timeouts { idle: None, ..T };
        let mut c = listening();
        c.step(ms(0), at(Link::Open), &t);
        assert_eq!(c.deadline(&t), None);
        assert_eq!(
            c.step(ms(u32::MAX as u64), at(Link::Open), &t).action,
            Action::Wait
        );
    }
}
