//! Which MPS2 board the image is for: peripheral addresses and the name printed at boot.
//!
//! mps2-an386 (Cortex-M4) is the default; `mps2-an385` (Cortex-M3) and `mps2-an500`
//! (Cortex-M7) are features. All three have the CMSDK UART0 at 0x4000_4000.

#[cfg(all(feature = "mps2-an385", feature = "mps2-an500"))]
compile_error!("choose one board feature: mps2-an385 or mps2-an500");

#[cfg(all(feature = "mps2-an385", target_abi = "eabihf"))]
compile_error!("mps2-an385 is a Cortex-M3: build it with --target thumbv7m-none-eabi");

/// The banner carries the board as `board=<name>`, which the runner script greps for.
#[cfg(feature = "mps2-an385")]
pub const BANNER: &str = "smolecho firmware board=mps2-an385";
#[cfg(feature = "mps2-an500")]
pub const BANNER: &str = "smolecho firmware board=mps2-an500";
#[cfg(not(any(feature = "mps2-an385", feature = "mps2-an500")))]
pub const BANNER: &str = "smolecho firmware board=mps2-an386";

/// CMSDK APB UART0.
pub const UART0: usize = 0x4000_4000;

/// The LAN9118 (LAN9220 on the real boards) register block.
#[cfg(feature = "mps2-an500")]
pub const ETH_BASE: usize = 0xA000_0000;
#[cfg(not(feature = "mps2-an500"))]
pub const ETH_BASE: usize = 0x4020_0000;

/// The Ethernet controller's interrupt line (IRQ 13 on AN385, AN386 and AN500 as QEMU wires
/// them; checked by reading the NVIC pending bits with a frame waiting).
#[derive(Clone, Copy)]
pub struct EthIrq;

// SAFETY: 13 is a valid external interrupt number of these boards (the vector table in
// `vectors.rs` ends with its entry).
unsafe impl cortex_m::interrupt::InterruptNumber for EthIrq {
    fn number(self) -> u16 {
        13
    }
}

/// The board's Ethernet driver type.
pub type Eth = crate::lan9118::Lan9118<ETH_BASE>;

/// UART0 of this board.
pub fn uart() -> crate::uart::Uart {
    // SAFETY: UART0 is the CMSDK UART on every supported board; the firmware only transmits
    // on it, so several handles (main and the panic handler) only interleave output.
    unsafe { crate::uart::Uart::new(UART0) }
}
