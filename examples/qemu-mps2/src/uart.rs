//! The CMSDK APB UART (UART0 of the MPS2 boards), transmit only, polled.
//!
//! Registers (offsets from the base): DATA 0x00, STATE 0x04 (bit 0: TX buffer full),
//! CTRL 0x08 (bit 0: TX enable), BAUDDIV 0x10. The UART sends nothing until BAUDDIV and
//! CTRL.TXEN are set. Output is small decimal/hex helpers instead of `core::fmt`, which would
//! cost several KiB of flash.

use core::ptr;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const CTRL_TX_EN: u32 = 1 << 0;

/// Polls of STATE before a byte is written anyway: the UART cannot hold the firmware up.
const TX_WAIT_POLLS: u32 = 10_000;

/// A transmit-only CMSDK UART.
pub struct Uart {
    base: usize,
}

impl Uart {
    /// The UART at `base`.
    ///
    /// # Safety
    /// `base` must be the address of a CMSDK APB UART, and nothing else may drive its
    /// registers in a way that conflicts with transmitting (several `Uart`s on the same base,
    /// as the panic handler makes, only interleave their output).
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: `new`'s contract makes `base + offset` a register of this UART; the register
        // block is device memory that accepts aligned 32-bit volatile writes.
        unsafe { ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: as in `write_reg`; reading STATE has no side effect.
        unsafe { ptr::read_volatile((self.base + offset) as *const u32) }
    }

    /// Enable the transmitter with baud divider 16 (the lowest the UART accepts).
    pub fn enable(&self) {
        self.write_reg(BAUDDIV, 16);
        self.write_reg(CTRL, CTRL_TX_EN);
    }

    /// Send one byte, waiting (bounded) while the transmit buffer is full.
    pub fn byte(&self, b: u8) {
        for _ in 0..TX_WAIT_POLLS {
            if self.read_reg(STATE) & STATE_TX_FULL == 0 {
                break;
            }
        }
        self.write_reg(DATA, u32::from(b));
    }

    /// Send a string; `\n` goes out as `\r\n`.
    pub fn str(&self, s: &str) -> &Self {
        for b in s.bytes() {
            if b == b'\n' {
                self.byte(b'\r');
            }
            self.byte(b);
        }
        self
    }

    /// Send `n` in decimal.
    pub fn dec(&self, mut n: u64) -> &Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[i..] {
            self.byte(d);
        }
        self
    }

    /// Send `n` as `width` lowercase hex digits (at most 8).
    pub fn hex(&self, n: u32, width: u32) -> &Self {
        for shift in (0..width.min(8)).rev() {
            let nibble = ((n >> (shift * 4)) & 0xf) as u8;
            self.byte(if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            });
        }
        self
    }
}

#[cfg(feature = "panic-fmt")]
impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        Uart::str(self, s);
        Ok(())
    }
}
