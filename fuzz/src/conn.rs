//! Target `conn`: arbitrary event sequences into the per-connection state machine
//! [`EchoConn`], with arbitrary observations, timeouts and clocks (backwards and extreme
//! ones included), and arbitrary `echoed` and `listening` calls.
//!
//! Properties checked after every call:
//! - `Action::Echo { max }` has `0 < max <= rx_queued` and `max <= tx_free`;
//! - no `Event::Closed` without an earlier `Event::Accepted`, and accepted − closed is 0 or 1;
//! - accepted − closed is exactly whether the machine says it is active;
//! - `Action::Listen` only while not active; `deadline()` never panics.

use arbitrary::{Arbitrary, Unstructured};
use smolecho::fuzzing::{Action, EchoConn, Event, Link, Observation, Timeouts};
use smolecho::smoltcp::time::{Duration, Instant};

/// How the next clock value is chosen.
#[derive(Debug, Arbitrary)]
enum Clock {
    /// The same instant again.
    Same,
    /// Forward by up to ~65 s in milliseconds.
    ForwardMs(u16),
    /// Forward by a whole number of seconds.
    ForwardSecs(u8),
    /// Backwards by up to ~65 s.
    BackMs(u16),
    /// Anywhere at all, extremes included.
    Absolute(i64),
    /// The extremes.
    Max,
    Min,
}

/// The size of a queue in an observation: mostly small, sometimes anything.
#[derive(Debug, Arbitrary)]
enum Size {
    Small(u8),
    Buffer(u16),
    Any(usize),
    Max,
}

impl Size {
    fn get(&self) -> usize {
        match *self {
            Size::Small(n) => usize::from(n % 8),
            Size::Buffer(n) => usize::from(n),
            Size::Any(n) => n,
            Size::Max => usize::MAX,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum LinkChoice {
    Listening,
    Handshake,
    Open,
    PeerClosed,
    Finishing,
    Done,
    ResetPending,
}

impl LinkChoice {
    fn get(&self) -> Link {
        match self {
            LinkChoice::Listening => Link::Listening,
            LinkChoice::Handshake => Link::Handshake,
            LinkChoice::Open => Link::Open,
            LinkChoice::PeerClosed => Link::PeerClosed,
            LinkChoice::Finishing => Link::Finishing,
            LinkChoice::Done => Link::Done,
            LinkChoice::ResetPending => Link::ResetPending,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// `step` with an observation; `obey` carries out Echo (calls `echoed`) and Listen (calls
    /// `listening`) the way the glue does, with `short` bytes fewer echoed than allowed.
    Step {
        clock: Clock,
        link: LinkChoice,
        rx: Size,
        tx: Size,
        free: Size,
        obey: bool,
        short: u8,
    },
    /// A stray `echoed` call.
    Echoed { clock: Clock, n: Size },
    /// A stray `listening` call.
    Listening,
    /// Ask for the deadline under other timeouts.
    Deadline {
        idle: Option<u64>,
        handshake: Option<u64>,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    idle: Option<u64>,
    handshake: Option<u64>,
    ops: Vec<Op>,
}

/// What one run saw, for tests that check the harness reaches the states it should.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Steps taken.
    pub steps: u64,
    /// `Event::Accepted` seen.
    pub accepted: u64,
    /// `Event::Closed` seen.
    pub closed: u64,
    /// `Event::HandshakeTimeout` seen.
    pub handshake_timeouts: u64,
    /// Echo actions returned.
    pub echoes: u64,
}

fn timeouts(idle: Option<u64>, handshake: Option<u64>) -> Timeouts {
    Timeouts {
        idle: idle.map(Duration::from_micros),
        handshake: handshake.map(Duration::from_micros),
    }
}

fn advance(now: Instant, clock: &Clock) -> Instant {
    let us = now.total_micros();
    let next = match *clock {
        Clock::Same => us,
        Clock::ForwardMs(ms) => us.saturating_add(i64::from(ms) * 1000),
        Clock::ForwardSecs(s) => us.saturating_add(i64::from(s) * 1_000_000),
        Clock::BackMs(ms) => us.saturating_sub(i64::from(ms) * 1000),
        Clock::Absolute(t) => t,
        Clock::Max => i64::MAX,
        Clock::Min => i64::MIN,
    };
    Instant::from_micros(next)
}

/// Run one input; panics when a property fails.
pub fn run(data: &[u8]) -> Report {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return Report::default();
    };
    if crate::frames::debug() {
        eprintln!("{input:#?}");
    }
    check(&input)
}

fn check(input: &Input) -> Report {
    let limits = timeouts(input.idle, input.handshake);
    let mut conn = EchoConn::new();
    let mut now = Instant::ZERO;
    let mut report = Report::default();
    for op in &input.ops {
        match op {
            Op::Step {
                clock,
                link,
                rx,
                tx,
                free,
                obey,
                short,
            } => {
                now = advance(now, clock);
                let obs = Observation {
                    link: link.get(),
                    rx_queued: rx.get(),
                    tx_queued: tx.get(),
                    tx_free: free.get(),
                };
                let before = conn;
                let step = conn.step(now, obs, &limits);
                report.steps += 1;
                match step.event {
                    Some(Event::Accepted) => {
                        assert_eq!(
                            report.accepted, report.closed,
                            "accepted twice without a close: {before:?} {obs:?} -> {step:?}"
                        );
                        report.accepted += 1;
                    }
                    Some(Event::Closed(_)) => {
                        assert!(
                            report.closed < report.accepted,
                            "closed without an accept: {before:?} {obs:?} -> {step:?}"
                        );
                        report.closed += 1;
                    }
                    Some(Event::HandshakeTimeout) => report.handshake_timeouts += 1,
                    None => {}
                }
                assert!(report.accepted - report.closed <= 1);
                assert_eq!(
                    report.accepted - report.closed == 1,
                    conn.is_active(),
                    "active flag disagrees with the events: {before:?} {obs:?} -> {step:?} {conn:?}"
                );
                match step.action {
                    Action::Echo { max } => {
                        report.echoes += 1;
                        assert!(max > 0, "empty echo: {before:?} {obs:?}");
                        assert!(
                            max <= obs.rx_queued && max <= obs.tx_free,
                            "echo of {max} with {obs:?} from {before:?}"
                        );
                        if *obey {
                            conn.echoed(now, max.saturating_sub(usize::from(*short)));
                        }
                    }
                    Action::Listen => {
                        assert!(!conn.is_active(), "listen while active: {conn:?}");
                        if *obey {
                            conn.listening();
                        }
                    }
                    Action::Wait | Action::Close | Action::Abort => {}
                    // Actions added later (`Recycle`: forget a half-open connection and
                    // listen again) end nothing that was accepted, and the glue re-listens.
                    #[allow(unreachable_patterns)]
                    _ => {
                        assert!(!conn.is_active(), "{:?} while active", step.action);
                        if *obey {
                            conn.listening();
                        }
                    }
                }
            }
            Op::Echoed { clock, n } => {
                now = advance(now, clock);
                conn.echoed(now, n.get());
            }
            Op::Listening => {
                // The glue only calls this after Listen, which never happens while active;
                // a stray call on an active slot would hide a connection, so skip that case.
                if !conn.is_active() {
                    conn.listening();
                }
            }
            Op::Deadline { idle, handshake } => {
                let _ = conn.deadline(&timeouts(*idle, *handshake));
            }
        }
        let _ = conn.deadline(&limits);
    }
    report
}
