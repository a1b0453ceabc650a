//! smolecho on an Arm MPS2 board: TCP and UDP echo (RFC 862) on port 7 over the board's
//! LAN9118 Ethernet controller. Boots in QEMU (`cargo run --release`); see the README.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

mod board;
mod clock;
mod lan9118;
mod net;
mod report;
mod rt;
mod stack;
mod uart;
mod vectors;

use cortex_m::peripheral::NVIC;
use cortex_m_rt::entry;
use smoltcp::time::Instant;
use static_cell::ConstStaticCell;

use crate::board::{Eth, EthIrq};
use crate::clock::Clock;
use crate::net::{Change, Net};

// SAFETY: ETH_BASE is the board's LAN9118 register block, and this driver (taken once, in
// `main`) is its only user.
static ETH: ConstStaticCell<Eth> = ConstStaticCell::new(unsafe { Eth::new() });

/// Counters go out on the UART this often.
const REPORT_EVERY_MS: u64 = 5_000;

#[entry]
fn main() -> ! {
    let uart = board::uart();
    uart.enable();
    uart.str("\n").str(board::BANNER).str(" (smoltcp 0.14)\n");
    let Some(cp) = cortex_m::Peripherals::take() else {
        report::halt("core peripherals taken")
    };
    let mut clock = Clock::start(cp.SYST);

    let Some(eth) = ETH.try_take() else {
        report::halt("driver taken")
    };
    let mac = match eth.init(cfg!(feature = "ipv6")) {
        Ok(mac) => mac,
        Err(_) => report::halt("LAN9118 init failed"),
    };
    report::nic(&uart, eth, mac);
    #[cfg(feature = "fault-injection")]
    {
        eth.inject_rx_underrun();
        uart.str("fault injection: RX data FIFO underrun\n");
    }
    let Some(net) = Net::new(eth, mac, clock.now()) else {
        report::halt("network setup failed")
    };
    let mut ready = false;
    if !cfg!(feature = "dhcp") {
        report::address(&uart, net::STATIC_V4, Some(net::GATEWAY_V4), "static");
        ready = report::ready(&uart, clock.millis());
    }

    let mut next_report = REPORT_EVERY_MS;
    loop {
        let now = clock.now();
        let (progressed, change) = net.poll(now);
        match change {
            Some(Change::Configured(cidr, gateway)) => {
                report::address(&uart, cidr, gateway, "dhcp");
                if !ready {
                    ready = report::ready(&uart, clock.millis());
                }
            }
            Some(Change::Deconfigured) if ready => {
                uart.str("dhcp: lease lost\n");
            }
            _ => {}
        }
        if clock.millis() >= next_report {
            next_report = clock.millis() + REPORT_EVERY_MS;
            report::counters(&uart, net);
        }
        if !progressed {
            sleep(&mut clock, net, next_report);
        }
    }
}

/// Sleep (WFI) until a frame is waiting, the stack's next deadline passes, or the next report
/// is due. SysTick wakes the CPU every millisecond; the Ethernet IRQ wakes it when a frame
/// arrives. Called only after a poll that did nothing, it sleeps at least once when a frame
/// is already waiting (the driver could not take it, say for lack of transmit room): a
/// deadline already past costs one poll per millisecond, never a busy loop. Out of line, so
/// its locals are not part of `main`'s frame, under everything `main` calls.
#[inline(never)]
fn sleep(clock: &mut Clock, net: &mut Net, report_at: u64) {
    let now = clock.now();
    // Compared as `Instant`s (microseconds): no 64-bit division on the way.
    let report_at = Instant::from_millis(report_at as i64);
    let wake = net.poll_at(now).map_or(report_at, |at| at.min(report_at));
    // A frame already waiting is one the driver could not take: sleep a tick on SysTick alone.
    let mut stuck = net.dev().rx_pending();
    loop {
        // Arm the wake-up with interrupts off: a frame arriving from here on leaves the IRQ
        // pending, and WFI returns at once for a pending interrupt even with PRIMASK set.
        cortex_m::interrupt::disable();
        let frame = !stuck && {
            net.dev().arm_rx_irq();
            NVIC::unpend(EthIrq);
            // SAFETY: no critical section of this firmware relies on this line being
            // masked; its handler only masks it again.
            unsafe { NVIC::unmask(EthIrq) };
            net.dev().rx_pending()
        };
        if !frame {
            cortex_m::asm::wfi();
        }
        // SAFETY: interrupts were on before this function turned them off (cortex-m-rt starts
        // `main` with them on, and only the fatal paths turn them off for good).
        unsafe { cortex_m::interrupt::enable() };
        NVIC::mask(EthIrq);
        stuck = false;
        if frame || clock.now() >= wake || net.dev().rx_pending() {
            break;
        }
    }
}
