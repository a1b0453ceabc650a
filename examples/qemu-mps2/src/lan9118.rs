//! A polled driver for the SMSC LAN9118 (and the software-compatible LAN9220 of the MPS2
//! boards) as a smoltcp [`Device`].
//!
//! The controller has a receive data FIFO with a separate status FIFO (one status word per
//! frame, with the length including the 4-byte FCS), and a transmit data FIFO taking two
//! command words and then the frame, with a status FIFO reporting each frame's fate. The MAC
//! registers sit behind an indirect window (MAC_CSR_CMD / MAC_CSR_DATA) and the PHY behind
//! the MAC's MII registers.
//!
//! - **No allocation**: one receive and one transmit frame buffer inside the driver, which
//!   lives in a `static`.
//! - **Errors**: bad receive frames (error summary, filter fail, runt or oversize) are read out
//!   and dropped; a receive FIFO that lost sync (receiver error) is dumped; dropped-frame,
//!   receive-watchdog, transmitter-error and FIFO overrun conditions are counted and cleared;
//!   a transmitter error restarts the transmitter. The transmit status FIFO is drained on every
//!   transmit and counted.
//! - **Registers**: only documented registers are touched (older QEMU models abort on others).
//! - **Interrupts**: none is handled here. The IRQ line is configured (active high, on the
//!   first RX status entry) only so that the firmware can sleep until a frame arrives; see
//!   [`Lan9118::arm_rx_irq`].
//! - **MAC address**: the one the controller loaded from its EEPROM; without a valid one (no
//!   EEPROM on a board) a locally administered fallback is programmed.

use core::ptr;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

// System control and status registers (byte offsets).
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV: usize = 0x50;
const INT_STS: usize = 0x58;
const IRQ_CFG: usize = 0x54;
const INT_EN: usize = 0x5c;
const BYTE_TEST: usize = 0x64;
const FIFO_INT: usize = 0x68;
const RX_CFG: usize = 0x6c;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const FREE_RUN: usize = 0x9c;
const RX_DROP: usize = 0xa0;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

const BYTE_TEST_VALUE: u32 = 0x8765_4321;

// HW_CFG
const HW_CFG_SRST: u32 = 1 << 0;
const HW_CFG_TX_FIF_SZ_5K: u32 = 5 << 16;
const HW_CFG_MBO: u32 = 1 << 20;
// PMT_CTRL
const PMT_READY: u32 = 1 << 0;
// TX_CFG
const TX_CFG_STOP_TX: u32 = 1 << 0;
const TX_CFG_TX_ON: u32 = 1 << 1;
const TX_CFG_TXSAO: u32 = 1 << 2;
const TX_CFG_TXD_DUMP: u32 = 1 << 14;
const TX_CFG_TXS_DUMP: u32 = 1 << 15;
// RX_CFG
const RX_CFG_RX_DUMP: u32 = 1 << 15;
// IRQ_CFG: IRQ output enabled, active high, push-pull
const IRQ_CFG_EN_HIGH_PUSHPULL: u32 = (1 << 8) | (1 << 4) | (1 << 0);
// INT_STS
const INT_RSFL: u32 = 1 << 3;
const INT_RXDF: u32 = 1 << 6;
const INT_TDFO: u32 = 1 << 10;
const INT_TXE: u32 = 1 << 13;
const INT_RXE: u32 = 1 << 14;
const INT_RWT: u32 = 1 << 15;
const INT_TXSO: u32 = 1 << 16;
const INT_RXSTOP: u32 = 1 << 24;
const INT_ERRORS: u32 = INT_RXDF | INT_TDFO | INT_TXE | INT_RXE | INT_RWT | INT_TXSO;
// MAC_CSR_CMD
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CSR_READ: u32 = 1 << 30;
// MAC registers (indirect)
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MII_ACC: u32 = 6;
const MII_DATA: u32 = 7;
// MAC_CR
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_MCPAS: u32 = 1 << 19;
const MAC_CR_FDPX: u32 = 1 << 20;
// MII_ACC
const MII_BUSY: u32 = 1 << 0;
const MII_WRITE: u32 = 1 << 1;
const PHY_ADDR: u32 = 1;
// PHY registers
const PHY_BCR: u32 = 0;
const PHY_BSR: u32 = 1;
const PHY_ANAR: u32 = 4;
const BCR_ANENABLE: u32 = 1 << 12;
const BCR_RESTART_AN: u32 = 1 << 9;
const BSR_LINK_UP: u32 = 1 << 2;
/// 10/100, half and full duplex, IEEE 802.3.
const ANAR_ALL_10_100: u32 = 0x01e1;
// RX status word
const RXS_ERROR: u32 = 1 << 15;
const RXS_FILTER_FAIL: u32 = 1 << 30;
// TX command A / B, TX status
const TXA_FIRST: u32 = 1 << 13;
const TXA_LAST: u32 = 1 << 12;
const TXS_ERROR: u32 = 1 << 15;

/// The station address used when the controller has none (locally administered, unicast).
pub const FALLBACK_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0xc4, 0x00, 0x07];
/// An Ethernet frame without FCS, as smoltcp sees it.
pub const MTU: usize = 1514;
/// The largest received frame kept, FCS included (a VLAN-tagged 1514 + 4 byte frame is
/// dropped as oversize: the firmware does not use VLANs).
const RX_MAX: usize = MTU + 4;
/// The shortest frame taken: an Ethernet header and the FCS.
const RX_MIN: usize = 14 + 4;
/// Bound on waits for self-clearing bits (reset, MAC and MII access).
const WAIT_POLLS: u32 = 100_000;
/// Bound on bad frames skipped in one `receive`.
const RX_SKIP_MAX: u32 = 16;
/// Bound on TX status words drained at once (the FIFO holds at most 512 on QEMU).
const TX_STATUS_MAX: u32 = 64;

/// Why the controller could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// BYTE_TEST did not read 0x87654321: no controller, or wrong bus width or endianness.
    ByteTest(u32),
    /// A self-clearing bit (soft reset, MAC or MII access) never cleared.
    Timeout,
}

/// Error and traffic counters; they wrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to smoltcp.
    pub rx_frames: u32,
    /// Frames sent.
    pub tx_frames: u32,
    /// Received frames dropped for an error status, a filter fail, or a bad length.
    pub rx_errors: u32,
    /// Frames the controller dropped because its receive FIFO was full (RX_DROP and RXDF).
    pub rx_dropped: u32,
    /// Receiver errors (FIFO out of sync) and receive watchdog timeouts; each dumps the FIFO.
    pub rx_resets: u32,
    /// Frames whose TX status reported an error, plus transmitter errors.
    pub tx_errors: u32,
    /// TX data or status FIFO overruns.
    pub tx_overruns: u32,
    /// `transmit` calls refused because the TX data FIFO had no room for a full frame.
    pub tx_busy: u32,
}

/// The register block of one controller.
#[derive(Clone, Copy)]
struct Regs {
    base: usize,
}

impl Regs {
    fn read(self, offset: usize) -> u32 {
        // SAFETY: `Lan9118::new`'s contract makes `base` the controller's register block;
        // `offset` is one of the documented, word-aligned register offsets above. Reads of the
        // FIFO ports pop a word, which the callers account for.
        unsafe { ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Wait (bounded) until `bit` of register `offset` is set; whether it was.
    fn wait_set(self, offset: usize, bit: u32) -> bool {
        (0..WAIT_POLLS).any(|_| self.read(offset) & bit != 0)
    }

    /// Wait (bounded) until `bit` of register `offset` is clear.
    fn wait_clear(self, offset: usize, bit: u32) -> Result<(), InitError> {
        for _ in 0..WAIT_POLLS {
            if self.read(offset) & bit == 0 {
                return Ok(());
            }
        }
        Err(InitError::Timeout)
    }

    fn mac_read(self, reg: u32) -> Result<u32, InitError> {
        self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY)?;
        self.write(MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | reg);
        self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY)?;
        Ok(self.read(MAC_CSR_DATA))
    }

    fn mac_write(self, reg: u32, value: u32) -> Result<(), InitError> {
        self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY)?;
        self.write(MAC_CSR_DATA, value);
        self.write(MAC_CSR_CMD, MAC_CSR_BUSY | reg);
        self.wait_clear(MAC_CSR_CMD, MAC_CSR_BUSY)
    }

    fn mii_wait(self) -> Result<(), InitError> {
        for _ in 0..WAIT_POLLS {
            if self.mac_read(MII_ACC)? & MII_BUSY == 0 {
                return Ok(());
            }
        }
        Err(InitError::Timeout)
    }

    fn phy_read(self, reg: u32) -> Result<u32, InitError> {
        self.mii_wait()?;
        self.mac_write(MII_ACC, (PHY_ADDR << 11) | (reg << 6) | MII_BUSY)?;
        self.mii_wait()?;
        Ok(self.mac_read(MII_DATA)? & 0xffff)
    }

    fn phy_write(self, reg: u32, value: u32) -> Result<(), InitError> {
        self.mii_wait()?;
        self.mac_write(MII_DATA, value)?;
        self.mac_write(
            MII_ACC,
            (PHY_ADDR << 11) | (reg << 6) | MII_WRITE | MII_BUSY,
        )?;
        self.mii_wait()
    }

    /// Frames waiting in the RX status FIFO.
    fn rx_frames_waiting(self) -> u32 {
        (self.read(RX_FIFO_INF) >> 16) & 0xff
    }

    /// Pop and drop `words` words of the RX data FIFO (the part of a frame not kept).
    fn rx_discard(self, words: usize) {
        for _ in 0..words {
            let _ = self.read(RX_DATA_FIFO);
        }
    }
}

/// A LAN9118 at address `BASE` with its frame buffers; see the [module docs](self).
///
/// The base address is a type parameter so that the driver is all zeroes until it runs and
/// its `static` lands in `.bss` (a field would put the 3 KiB of buffers into `.data`, and so
/// into flash too).
pub struct Lan9118<const BASE: usize> {
    rx: [u8; RX_MAX],
    tx: [u8; MTU],
    tag: u16,
    /// MAC_CR as written by `init` (the receiver restart writes it back).
    mac_cr: u32,
    stats: Stats,
}

impl<const BASE: usize> Lan9118<BASE> {
    const REGS: Regs = Regs { base: BASE };

    /// A driver for the controller at `BASE`; nothing is touched until [`init`](Self::init).
    ///
    /// # Safety
    /// `BASE` must be the address of a LAN9118-compatible register block in 32-bit mode, and
    /// nothing else may access that block while the driver exists.
    pub const unsafe fn new() -> Self {
        Self {
            rx: [0; RX_MAX],
            tx: [0; MTU],
            tag: 0,
            mac_cr: 0,
            stats: Stats {
                rx_frames: 0,
                tx_frames: 0,
                rx_errors: 0,
                rx_dropped: 0,
                rx_resets: 0,
                tx_errors: 0,
                tx_overruns: 0,
                tx_busy: 0,
            },
        }
    }

    /// Reset and configure the controller: soft reset, PHY auto-negotiation (started, not
    /// awaited), receive and transmit on, perfect MAC filtering (the reset state is
    /// promiscuous), all multicast passed too when `pass_multicast` (IPv6 needs it).
    /// Returns the station MAC address (from the EEPROM, as the controller loaded it).
    pub fn init(&mut self, pass_multicast: bool) -> Result<[u8; 6], InitError> {
        let r = Self::REGS;
        let test = r.read(BYTE_TEST);
        if test != BYTE_TEST_VALUE {
            return Err(InitError::ByteTest(test));
        }
        // The controller is accessible once PMT_CTRL.READY is set (after power-up or reset).
        r.write(HW_CFG, HW_CFG_SRST);
        r.wait_clear(HW_CFG, HW_CFG_SRST)?;
        let mut ready = false;
        for _ in 0..WAIT_POLLS {
            if r.read(PMT_CTRL) & PMT_READY != 0 {
                ready = true;
                break;
            }
        }
        if !ready {
            return Err(InitError::Timeout);
        }
        r.write(HW_CFG, HW_CFG_MBO | HW_CFG_TX_FIF_SZ_5K);
        // The driver is polled. The IRQ line only wakes the CPU: it rises when a received
        // frame's status enters the RX status FIFO (level 0: the first one), and the firmware
        // re-arms it before sleeping.
        r.write(INT_EN, 0);
        r.write(INT_STS, u32::MAX);
        r.write(FIFO_INT, 0);
        r.write(IRQ_CFG, IRQ_CFG_EN_HIGH_PUSHPULL);
        r.write(INT_EN, INT_RSFL);

        r.phy_write(PHY_ANAR, ANAR_ALL_10_100)?;
        r.phy_write(PHY_BCR, BCR_ANENABLE | BCR_RESTART_AN)?;

        let low = r.mac_read(MAC_ADDRL)?;
        let high = r.mac_read(MAC_ADDRH)?;
        let [m0, m1, m2, m3] = low.to_le_bytes();
        let [m4, m5, _, _] = high.to_le_bytes();
        let mut mac = [m0, m1, m2, m3, m4, m5];
        if mac[0] & 1 != 0 || mac == [0; 6] {
            // Multicast, broadcast (erased EEPROM) or zero: not a station address.
            mac = FALLBACK_MAC;
            let [a, b, c, d, e, f] = mac;
            r.mac_write(MAC_ADDRL, u32::from_le_bytes([a, b, c, d]))?;
            r.mac_write(MAC_ADDRH, u32::from_le_bytes([e, f, 0, 0]))?;
        }

        // Frames start word-aligned in the FIFOs, no offset or end padding.
        r.write(RX_CFG, 0);
        r.write(TX_CFG, TX_CFG_TX_ON | TX_CFG_TXSAO);
        let mut mac_cr = MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX;
        if pass_multicast {
            mac_cr |= MAC_CR_MCPAS;
        }
        r.mac_write(MAC_CR, mac_cr)?;
        self.mac_cr = mac_cr;
        Ok(mac)
    }

    /// The chip ID and revision (`0x0118_0001` on QEMU).
    pub fn id_rev(&self) -> u32 {
        Self::REGS.read(ID_REV)
    }

    /// The controller's free-running 25 MHz counter (a little entropy for the TCP stack).
    pub fn free_run(&self) -> u32 {
        Self::REGS.read(FREE_RUN)
    }

    /// Whether the PHY reports the link up.
    pub fn link_up(&self) -> bool {
        Self::REGS
            .phy_read(PHY_BSR)
            .is_ok_and(|bsr| bsr & BSR_LINK_UP != 0)
    }

    /// Re-arm the receive wake-up: clear the RX status level flag, so the IRQ line rises
    /// again with the next frame.
    pub fn arm_rx_irq(&self) {
        Self::REGS.write(INT_STS, INT_RSFL);
    }

    /// Whether a received frame is waiting (cheap: one register read).
    pub fn rx_pending(&self) -> bool {
        Self::REGS.rx_frames_waiting() != 0
    }

    /// Fault injection for the host test: pop the RX data FIFO while no frame is waiting,
    /// which the controller reports as a receiver error (RXE). The next `receive` must count
    /// it in `rx_resets`, halt the receiver, dump the FIFOs and receive again.
    #[cfg(feature = "fault-injection")]
    pub fn inject_rx_underrun(&mut self) {
        if !self.rx_pending() {
            let _ = Self::REGS.read(RX_DATA_FIFO);
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Count and clear the error interrupt status bits and recover where needed.
    fn check_errors(&mut self) {
        let r = Self::REGS;
        let sts = r.read(INT_STS) & INT_ERRORS;
        if sts == 0 {
            return;
        }
        r.write(INT_STS, sts);
        let s = &mut self.stats;
        if sts & INT_RXDF != 0 {
            // RX_DROP counts the frames lost to a full FIFO (and clears on read).
            let lost = r.read(RX_DROP).max(1);
            s.rx_dropped = s.rx_dropped.wrapping_add(lost);
        }
        if sts & (INT_RXE | INT_RWT) != 0 {
            // The data FIFO and the status FIFO no longer agree: halt the receiver, dump both
            // FIFOs, and start it again.
            let mac_cr = self.mac_cr;
            if r.mac_write(MAC_CR, mac_cr & !MAC_CR_RXEN).is_ok() {
                r.wait_set(INT_STS, INT_RXSTOP);
                r.write(INT_STS, INT_RXSTOP);
                r.write(RX_CFG, RX_CFG_RX_DUMP);
                r.wait_clear(RX_CFG, RX_CFG_RX_DUMP).ok();
                r.mac_write(MAC_CR, mac_cr).ok();
            }
            s.rx_resets = s.rx_resets.wrapping_add(1);
        }
        if sts & (INT_TDFO | INT_TXSO) != 0 {
            s.tx_overruns = s.tx_overruns.wrapping_add(1);
        }
        if sts & INT_TXE != 0 {
            // The transmitter stopped on an error: stop it cleanly, drop what is queued, and
            // switch it on again.
            r.write(TX_CFG, TX_CFG_STOP_TX | TX_CFG_TXSAO);
            r.wait_clear(TX_CFG, TX_CFG_TX_ON).ok();
            r.write(TX_CFG, TX_CFG_TXSAO | TX_CFG_TXD_DUMP | TX_CFG_TXS_DUMP);
            r.write(TX_CFG, TX_CFG_TX_ON | TX_CFG_TXSAO);
            s.tx_errors = s.tx_errors.wrapping_add(1);
        }
    }

    /// Pop the TX status FIFO (bounded), counting frames that failed.
    fn drain_tx_status(&mut self) {
        for _ in 0..TX_STATUS_MAX {
            if (Self::REGS.read(TX_FIFO_INF) >> 16) & 0xff == 0 {
                break;
            }
            if Self::REGS.read(TX_STATUS_FIFO) & TXS_ERROR != 0 {
                self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
            }
        }
    }

    /// Read the next good frame into the receive buffer; returns its length without FCS.
    fn pop_frame(&mut self) -> Option<usize> {
        let r = Self::REGS;
        for _ in 0..RX_SKIP_MAX {
            if r.rx_frames_waiting() == 0 {
                return None;
            }
            let status = r.read(RX_STATUS_FIFO);
            let len = ((status >> 16) & 0x3fff) as usize;
            let words = len.div_ceil(4);
            let bad =
                status & (RXS_ERROR | RXS_FILTER_FAIL) != 0 || !(RX_MIN..=RX_MAX).contains(&len);
            if bad {
                r.rx_discard(words);
                self.stats.rx_errors = self.stats.rx_errors.wrapping_add(1);
                continue;
            }
            // Little-endian FIFO words: the first frame byte is the low byte of word 0.
            let mut chunks = self.rx.chunks_mut(4);
            for _ in 0..words {
                let word = r.read(RX_DATA_FIFO).to_le_bytes();
                if let Some(chunk) = chunks.next() {
                    let n = chunk.len();
                    chunk.copy_from_slice(&word[..n]);
                }
            }
            self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
            return Some(len - 4);
        }
        None
    }

    /// Room for one more full frame in the TX data FIFO (two command words and the data).
    fn tx_room(&self) -> bool {
        (Self::REGS.read(TX_FIFO_INF) & 0xffff) as usize >= MTU + 8
    }

    fn tx_token(&mut self) -> TxToken<'_> {
        self.tag = self.tag.wrapping_add(1);
        TxToken {
            regs: Self::REGS,
            buf: &mut self.tx,
            tag: self.tag,
            stats: &mut self.stats,
        }
    }
}

impl<const BASE: usize> Device for Lan9118<BASE> {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        self.check_errors();
        self.drain_tx_status();
        if !self.tx_room() {
            // Keep the frame in the FIFO until a reply could be sent.
            self.stats.tx_busy = self.stats.tx_busy.wrapping_add(1);
            return None;
        }
        let len = self.pop_frame()?;
        self.tag = self.tag.wrapping_add(1);
        let Self {
            rx, tx, tag, stats, ..
        } = self;
        Some((
            RxToken { frame: &rx[..len] },
            TxToken {
                regs: Self::REGS,
                buf: tx,
                tag: *tag,
                stats,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        self.drain_tx_status();
        if !self.tx_room() {
            self.check_errors();
            self.stats.tx_busy = self.stats.tx_busy.wrapping_add(1);
            return None;
        }
        Some(self.tx_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }
}

/// A received frame, already out of the FIFO.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Room for one frame in the TX data FIFO.
pub struct TxToken<'a> {
    regs: Regs,
    buf: &'a mut [u8; MTU],
    tag: u16,
    stats: &'a mut Stats,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MTU);
        let frame = &mut self.buf[..len];
        let result = f(frame);
        let r = self.regs;
        let len32 = len as u32;
        // One buffer holding the whole frame: first and last segment, word-aligned start.
        r.write(TX_DATA_FIFO, TXA_FIRST | TXA_LAST | len32);
        r.write(TX_DATA_FIFO, (u32::from(self.tag) << 16) | len32);
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            r.write(TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
        result
    }
}
