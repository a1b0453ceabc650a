//! The device interrupt part of the vector table.
//!
//! Without cortex-m-rt's `device` feature the table has 240 entries (960 bytes of flash) on
//! ARMv7-M. The MPS2 FPGA images have fewer external interrupts than 48; the firmware uses
//! one, the Ethernet controller's, only to wake from `WFI` (see `main::sleep`). Its handler
//! masks the line again (the device is left to the main loop); every other entry is
//! `DefaultHandler`.

use cortex_m::peripheral::NVIC;

use crate::board::EthIrq;

/// External interrupt lines in the table.
const IRQS: usize = 48;

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
