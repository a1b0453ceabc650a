//! The device interrupt part of the vector table.
//!
//! Without cortex-m-rt's `device` feature the table has 240 entries (960 bytes of flash) on
//! ARMv7-M. The MPS2 FPGA images have fewer external interrupts than 48, and the firmware
//! enables none of them (it polls), so 48 entries, all `DefaultHandler`, cover every line.

/// External interrupt lines in the table.
const IRQS: usize = 48;

unsafe extern "C" {
    /// cortex-m-rt's default exception handler (a loop, unless overridden).
    fn DefaultHandler();
}

#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
static __INTERRUPTS: [unsafe extern "C" fn(); IRQS] = [DefaultHandler; IRQS];
