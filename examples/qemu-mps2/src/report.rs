//! What the firmware says on the UART: boot lines, the ready line, counters, the stack
//! high-water mark, and fatal errors (the panic handler too).

use core::panic::PanicInfo;

use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use crate::board;
use crate::board::Eth;
use crate::net::{self, Net};
use crate::stack;
use crate::uart::Uart;

/// The line the host test waits for.
pub const READY: &str = "echo ready on tcp/7 udp/7\n";

/// MAC address and chip ID.
pub fn nic(uart: &Uart, eth: &Eth, mac: [u8; 6]) {
    uart.str("lan9118 id ").hex(eth.id_rev(), 8).str(" mac ");
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            uart.str(":");
        }
        uart.hex(u32::from(*b), 2);
    }
    uart.str(if eth.link_up() {
        " link up\n"
    } else {
        " link down\n"
    });
}

fn ipv4(uart: &Uart, a: Ipv4Address) {
    for (i, b) in a.octets().iter().enumerate() {
        if i > 0 {
            uart.str(".");
        }
        uart.dec(u64::from(*b));
    }
}

/// The IPv4 address in use.
pub fn address(uart: &Uart, cidr: Ipv4Cidr, gateway: Option<Ipv4Address>, how: &str) {
    uart.str("ipv4 ");
    ipv4(uart, cidr.address());
    uart.str("/").dec(u64::from(cidr.prefix_len())).str(" gw ");
    match gateway {
        Some(gw) => ipv4(uart, gw),
        None => {
            uart.str("none");
        }
    }
    uart.str(" (").str(how).str(")\n");
    #[cfg(feature = "ipv6")]
    uart.str("ipv6 fec0::15/64 gw fec0::2\n");
}

/// The ready line, with the boot time; returns `true`.
pub fn ready(uart: &Uart, millis: u64) -> bool {
    uart.str("boot to ready ")
        .dec(millis)
        .str(" ms, tcp ")
        .dec(net::SLOTS as u64);
    uart.str(" slots, stack high-water at boot ")
        .dec(stack::high_water() as u64)
        .str(" bytes\n")
        .str(READY);
    true
}

/// The counters line: each `=` is followed by the next value of [`counters`]' list.
const COUNTERS_LINE: &str = "stats tcp accepted= closed= reset= timed_out= held_syns= bytes= \
    | udp in= out= dropped= | eth rx= tx= rx_err= rx_drop= rx_reset= tx_err= tx_ovr= tx_busy=";

/// Values in [`COUNTERS_LINE`]: a list of another length does not compile.
const FIELDS: usize = {
    let line = COUNTERS_LINE.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < line.len() {
        n += (line[i] == b'=') as usize;
        i += 1;
    }
    n
};

/// One line of counters and the stack high-water mark.
#[inline(never)]
pub fn counters(uart: &Uart, net: &Net) {
    let (tcp, udp) = net.counters();
    let eth = net.dev().stats();
    // One loop over a table instead of a pair of calls per counter: smaller code.
    let values: [u64; FIELDS] = [
        tcp.accepted,
        tcp.closed,
        tcp.reset,
        tcp.timed_out,
        tcp.held_syns,
        tcp.bytes_out,
        udp.datagrams_in,
        udp.datagrams_out,
        udp.dropped,
        eth.rx_frames.into(),
        eth.tx_frames.into(),
        eth.rx_errors.into(),
        eth.rx_dropped.into(),
        eth.rx_resets.into(),
        eth.tx_errors.into(),
        eth.tx_overruns.into(),
        eth.tx_busy.into(),
    ];
    let mut values = values.iter();
    for b in COUNTERS_LINE.bytes() {
        uart.byte(b);
        if b == b'=' {
            uart.dec(values.next().copied().unwrap_or(0));
        }
    }
    uart.str("\nstack high-water ")
        .dec(stack::high_water() as u64);
    uart.str(" of ").dec(stack::size() as u64).str(" bytes\n");
}

/// Report a fatal condition and stop.
pub fn halt(why: &str) -> ! {
    let uart = board::uart();
    uart.str("FATAL: ").str(why).str("\n");
    stop()
}

fn stop() -> ! {
    cortex_m::interrupt::disable();
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    let uart = board::uart();
    uart.enable();
    uart.str("\nPANIC");
    // The message and location cost about 8 KiB of flash (every panic site keeps its
    // location and core::fmt comes in), so they are behind a feature.
    #[cfg(feature = "panic-fmt")]
    {
        use core::fmt::Write;
        let mut w = board::uart();
        let _ = write!(w, ": {info}");
    }
    #[cfg(not(feature = "panic-fmt"))]
    {
        let _ = info;
        uart.str(" (build with --features panic-fmt for the message)");
    }
    uart.str("\n");
    stop()
}

#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    let uart = board::uart();
    uart.str("\nHARDFAULT pc=")
        .hex(frame.pc(), 8)
        .str(" lr=")
        .hex(frame.lr(), 8)
        .str("\n");
    stop()
}
