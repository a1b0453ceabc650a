//! The millisecond clock: SysTick at 1 kHz from the 25 MHz core clock.
//!
//! The exception handler only counts. [`Clock::now`] widens the 32-bit count to a 64-bit
//! smoltcp `Instant`, so the clock never wraps (a 32-bit count would after 49 days).

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use smoltcp::time::Instant;

/// The core clock of the MPS2 FPGA images.
pub const CORE_HZ: u32 = 25_000_000;
/// Clock ticks per second.
pub const TICK_HZ: u32 = 1_000;

static TICKS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// The running clock; owns SysTick.
pub struct Clock {
    _syst: SYST,
    last: u32,
    high: u64,
}

impl Clock {
    /// Start SysTick at [`TICK_HZ`] with its interrupt enabled.
    pub fn start(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(CORE_HZ / TICK_HZ - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Self {
            _syst: syst,
            last: TICKS.load(Ordering::Relaxed),
            high: 0,
        }
    }

    /// Milliseconds since [`start`](Self::start). Call it at least once every 49 days.
    pub fn millis(&mut self) -> u64 {
        let now = TICKS.load(Ordering::Relaxed);
        if now < self.last {
            self.high += 1 << 32;
        }
        self.last = now;
        self.high | u64::from(now)
    }

    /// The current time as a smoltcp `Instant`.
    pub fn now(&mut self) -> Instant {
        Instant::from_millis(self.millis() as i64)
    }
}
