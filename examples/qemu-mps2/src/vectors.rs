//! The device interrupt part of the vector table.
//!
//! Without cortex-m-rt's `device` feature the table has 240 entries (960 bytes of flash) on
//! ARMv7-M. The firmware uses one external interrupt, the Ethernet controller's (IRQ 13), only
//! to wake from `WFI` (see `main::sleep`), so the table ends with it: an interrupt line the
//! firmware never unmasks cannot fire, and needs no entry. The handler masks the line again
//! (the device is left to the main loop); every other entry is `DefaultHandler`.

use cortex_m::peripheral::NVIC;

use crate::board::EthIrq;

/// External interrupt lines in the table: 0 to 13, the Ethernet controller's.
const IRQS: usize = 14;

unsafe extern "C" {
    /// cortex-m-rt's default exception handler (a loop, unless overridden).
    fn DefaultHandler();
}

#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
static __INTERRUPTS: [unsafe extern "C" fn(); IRQS] = {
    let mut table = [DefaultHandler as unsafe extern "C" fn(); IRQS];
    table[13] = eth_wake;
    table
};

/// The Ethernet IRQ: the CPU is awake now, which is all it was for. Mask the (level) line so
/// it does not fire again before the main loop has taken the frames and re-armed it.
unsafe extern "C" fn eth_wake() {
    NVIC::mask(EthIrq);
}
