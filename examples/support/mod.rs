//! What the Linux TAP examples share: the TAP device ([`tap`]), the command line ([`cli`]),
//! and the host glue below: a clock, the stop signals, and sleeping on a file descriptor.
//!
//! None of this is part of the library: smolecho itself stays `no_std` and knows nothing of
//! Linux. Everything that touches the OS lives here.

// Each example uses its own part of the shared support code.
#![allow(dead_code)]

pub mod cli;
pub mod tap;

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use smolecho::smoltcp::time::{Duration, Instant};

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

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Make SIGINT (Ctrl-C) and SIGTERM set the stop flag instead of killing the process.
pub fn stop_on_signals() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let handler = on_stop_signal as extern "C" fn(libc::c_int);
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe, and it
        // stays valid for the life of the process (it is a plain function).
        let previous = unsafe { libc::signal(signal, handler as libc::sighandler_t) };
        if previous == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleep until `fd` is readable, `timeout` passes (`None`: no limit) or a signal arrives.
/// Returns whether the descriptor is readable.
///
/// The timeout is rounded up to the next millisecond, so a deadline a few microseconds away
/// is slept through instead of spun on.
pub fn wait_readable(fd: RawFd, timeout: Option<Duration>) -> io::Result<bool> {
    let millis: libc::c_int = match timeout {
        None => -1,
        Some(d) => {
            let ms = d.total_micros().div_ceil(1000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    };
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid, initialised pollfd that outlives the call, and the count is 1.
    let ready = unsafe { libc::poll(&mut pfd, 1, millis) };
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
pub fn leak<T>(value: T) -> &'static mut T {
    Box::leak(Box::new(value))
}
