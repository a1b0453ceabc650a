//! Stale-ACK repair: a `phy::Device` wrapper that keeps reordered data segments from being
//! thrown away by smoltcp.
//!
//! **Why.** smoltcp 0.14 (`socket/tcp.rs`, `Socket::process`, "Every acknowledgement must be
//! for transmitted but unacknowledged data") drops a whole segment whose ACK number is below
//! `SND.UNA`, payload included, and sends nothing back:
//!
//! ```text
//! if ack_number < ack_min {
//!     net_debug!("duplicate ACK ({} not in {}...{})", ...);
//!     return None;
//! }
//! ```
//!
//! RFC 9293 (3.10.7.4) only lets a receiver ignore such an *acknowledgement*; the text must
//! still be processed, and Linux does so (`tcp_ack` returns early, `tcp_data_queue` runs).
//! In an echo both directions carry data, so every client segment also acknowledges echo
//! bytes. On a link that reorders, a client data segment is often overtaken by a newer ACK
//! from the same client; smoltcp then discards it. Reordering alone becomes loss (about one
//! client segment in eight on a 0.2-0.6 ms jitter link, `tests/sim_liveness.rs`), each such
//! loss a hole, and holes beyond the assembler's ranges are dropped without any ACK
//! ("too many holes"), so the client's SACK scoreboard never learns of them and only its
//! retransmission timeout (200 ms, doubling) recovers.
//!
//! **What.** The wrapper remembers, per connection, the highest ACK number the peer has sent
//! that the stack could accept (not past what the stack itself has sent, seen on egress), and
//! the window that came with it. A segment that carries data or FIN with an older ACK number
//! gets that ACK number and window instead (checksum recomputed), so smoltcp treats its ACK
//! as the duplicate it is and keeps the data. Nothing else changes: pure ACKs, SYNs, RSTs,
//! corrupted, fragmented or unparsable frames, and connections the table does not know pass
//! untouched. The window comes with the ACK because a segment's window is relative to its
//! ACK number (RFC 9293's `SND.WL2` rule).
//!
//! Not repaired: a pure ACK that fails smoltcp's acceptability test for segments without data
//! (its seq past RCV.NXT while the window is shut, or at the right edge) is ignored, ACK and
//! window fields included, and answered with a challenge ACK at most once a second. Giving it
//! an acceptable seq was tried: smoltcp then takes its ACK but sends no reply, and a smoltcp
//! peer loses the duplicate ACK its fast retransmit counts on (more clients timed out in
//! `tests/sim_faults.rs`, 67 against 51 of 12,000), while the liveness scenarios pass without.
//!
//! A table entry is made by the stack's first segment on a connection (its SYN or SYN-ACK)
//! and is forgotten on RST either way or replaced, least recently used first, when the table
//! is full (a forgotten connection only loses the repair).

use core::cell::{Cell, RefCell};

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpProtocol, TcpPacket};

/// The largest frame repaired (Ethernet, 1500-byte MTU). Larger frames pass untouched.
pub const MAX_REPAIRED_FRAME: usize = 1514;

/// One connection's ACK state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    local_port: u16,
    remote: IpAddress,
    remote_port: u16,
    /// One past the highest sequence number the stack has sent.
    sent_end: u32,
    /// The highest acceptable ACK number seen from the peer, and its window field.
    acked: Option<(u32, u16)>,
    /// For least-recently-used replacement.
    used: u32,
}

/// The per-connection state of [`StaleAckRepair`], for up to `CONNS` connections, and the
/// scratch frame a repair is written to. Keep it with the interface; build with
/// [`new`](Self::new) (`const`, so it can live in a `static`).
#[derive(Debug)]
pub struct StaleAckTable<const CONNS: usize> {
    /// Off: every frame passes untouched and nothing is learnt (for measurements).
    enabled: Cell<bool>,
    entries: [Cell<Option<Entry>>; CONNS],
    clock: Cell<u32>,
    repaired: Cell<u64>,
    scratch: RefCell<[u8; MAX_REPAIRED_FRAME]>,
}

impl<const CONNS: usize> Default for StaleAckTable<CONNS> {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether sequence number `a` is after `b` (modulo 2^32).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The parts of a TCP segment inside a frame that the table needs.
struct Segment {
    /// Byte offset of the TCP header in the frame.
    at: usize,
    src: IpAddress,
    dst: IpAddress,
}

impl<const CONNS: usize> StaleAckTable<CONNS> {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            enabled: Cell::new(true),
            entries: [const { Cell::new(None) }; CONNS],
            clock: Cell::new(0),
            repaired: Cell::new(0),
            scratch: RefCell::new([0; MAX_REPAIRED_FRAME]),
        }
    }

    /// Segments repaired so far.
    pub fn repaired(&self) -> u64 {
        self.repaired.get()
    }

    /// Turn the repair off (every frame passes untouched, the table forgets everything) or
    /// on again. A switch rather than a second device type, so firmware carries one copy of
    /// the interface's code.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.set(on);
        if !on {
            for entry in &self.entries {
                entry.set(None);
            }
        }
    }

    fn tick(&self) -> u32 {
        let t = self.clock.get().wrapping_add(1);
        self.clock.set(t);
        t
    }

    fn find(&self, local_port: u16, remote: IpAddress, remote_port: u16) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.get().is_some_and(|e| {
                e.local_port == local_port && e.remote == remote && e.remote_port == remote_port
            })
        })
    }

    /// A frame the stack sends: learn how far it has sent.
    fn outgoing(&self, medium: Medium, frame: &[u8]) {
        if !self.enabled.get() {
            return;
        }
        let Some(seg) = tcp_segment(medium, frame) else {
            return;
        };
        let Some(tcp) = frame
            .get(seg.at..)
            .and_then(|t| TcpPacket::new_checked(t).ok())
        else {
            return;
        };
        let (local_port, remote_port) = (tcp.src_port(), tcp.dst_port());
        let found = self.find(local_port, seg.dst, remote_port);
        if tcp.rst() {
            if let Some(slot) = found.and_then(|i| self.entries.get(i)) {
                slot.set(None);
            }
            return;
        }
        let len = u32::try_from(tcp.payload().len()).unwrap_or(0);
        let end = (tcp.seq_number().0 as u32)
            .wrapping_add(len)
            .wrapping_add(u32::from(tcp.syn()))
            .wrapping_add(u32::from(tcp.fin()));
        let used = self.tick();
        match found.and_then(|i| self.entries.get(i)) {
            // A SYN (or SYN-ACK) starts a connection afresh, whatever the table held.
            Some(slot) if !tcp.syn() => {
                if let Some(mut e) = slot.get() {
                    if after(end, e.sent_end) {
                        e.sent_end = end;
                    }
                    e.used = used;
                    slot.set(Some(e));
                }
            }
            _ if tcp.syn() => {
                let entry = Entry {
                    local_port,
                    remote: seg.dst,
                    remote_port,
                    sent_end: end,
                    acked: None,
                    used,
                };
                if let Some(slot) = found
                    .or_else(|| self.victim())
                    .and_then(|i| self.entries.get(i))
                {
                    slot.set(Some(entry));
                }
            }
            _ => {}
        }
    }

    /// The entry to replace: a free one, else the least recently used.
    fn victim(&self) -> Option<usize> {
        let now = self.clock.get();
        self.entries
            .iter()
            .enumerate()
            .max_by_key(|(_, e)| e.get().map_or(u32::MAX, |e| now.wrapping_sub(e.used)))
            .map(|(i, _)| i)
    }

    /// A received frame: learn its ACK, or say how to repair it (the newest ACK number and
    /// its window, for a data segment whose ACK is older).
    fn incoming(&self, medium: Medium, frame: &[u8]) -> Option<(Segment, u32, u16)> {
        if !self.enabled.get() {
            return None;
        }
        let seg = tcp_segment(medium, frame)?;
        let tcp = TcpPacket::new_checked(frame.get(seg.at..)?).ok()?;
        let i = self.find(tcp.dst_port(), seg.src, tcp.src_port())?;
        let slot = self.entries.get(i)?;
        let mut entry = slot.get()?;
        if tcp.rst() {
            // Even a corrupted RST costs only the repair of this connection.
            slot.set(None);
            return None;
        }
        if tcp.syn() || !tcp.ack() {
            return None;
        }
        let ack = tcp.ack_number().0 as u32;
        // Beyond what was sent: smoltcp answers it with a challenge ACK; nothing to learn.
        if after(ack, entry.sent_end) {
            return None;
        }
        let carries = !tcp.payload().is_empty() || tcp.fin();
        let repair = match entry.acked {
            // The newest ACK again: only a new window is worth learning (a repair must not
            // write a window the peer has since opened).
            Some((newest, window)) if newest == ack && window == tcp.window_len() => return None,
            // Older than the newest: a pure ACK is only a duplicate (smoltcp ignores it and
            // loses nothing); data gets the newest ACK and its window.
            Some((newest, window)) if after(newest, ack) => {
                if !carries {
                    return None;
                }
                Some((newest, window))
            }
            // A newer ACK, or the newest with a new window: learnt below.
            _ => None,
        };
        // What is learnt or written must come from an intact segment; a corrupted one is
        // smoltcp's to drop. Checked only here, as it costs a pass over the payload.
        if !tcp.verify_checksum(&seg.src, &seg.dst) {
            return None;
        }
        entry.used = self.tick();
        if repair.is_none() {
            entry.acked = Some((ack, tcp.window_len()));
        }
        slot.set(Some(entry));
        let (ack, window) = repair?;
        Some((seg, ack, window))
    }
}

/// The TCP segment inside an unfragmented IPv4 or IPv6 packet in `frame`.
fn tcp_segment(medium: Medium, frame: &[u8]) -> Option<Segment> {
    match medium {
        Medium::Ethernet => {
            let eth = smoltcp::wire::EthernetFrame::new_checked(frame).ok()?;
            let header = smoltcp::wire::EthernetFrame::<&[u8]>::header_len();
            match eth.ethertype() {
                smoltcp::wire::EthernetProtocol::Ipv4 => ipv4_segment(eth.payload(), header),
                #[cfg(feature = "proto-ipv6")]
                smoltcp::wire::EthernetProtocol::Ipv6 => ipv6_segment(eth.payload(), header),
                _ => None,
            }
        }
        #[cfg(feature = "medium-ip")]
        Medium::Ip => match frame.first().map(|b| b >> 4) {
            Some(4) => ipv4_segment(frame, 0),
            #[cfg(feature = "proto-ipv6")]
            Some(6) => ipv6_segment(frame, 0),
            _ => None,
        },
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn ipv4_segment(packet: &[u8], offset: usize) -> Option<Segment> {
    let ip = smoltcp::wire::Ipv4Packet::new_checked(packet).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 || ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    // `new_checked` vouched for the header length and the total length.
    let header = usize::from(ip.header_len());
    Some(Segment {
        at: offset.checked_add(header)?,
        src: IpAddress::Ipv4(ip.src_addr()),
        dst: IpAddress::Ipv4(ip.dst_addr()),
    })
}

#[cfg(feature = "proto-ipv6")]
fn ipv6_segment(packet: &[u8], offset: usize) -> Option<Segment> {
    let ip = smoltcp::wire::Ipv6Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    Some(Segment {
        at: offset.checked_add(ip.header_len())?,
        src: IpAddress::Ipv6(ip.src_addr()),
        dst: IpAddress::Ipv6(ip.dst_addr()),
    })
}

/// `device` behind the stale-ACK repair of `table`, for one interface poll; see the
/// [module docs](self).
#[derive(Debug)]
pub struct StaleAckRepair<'d, 't, D: ?Sized, const CONNS: usize> {
    inner: &'d mut D,
    table: &'t StaleAckTable<CONNS>,
}

impl<'d, 't, D: Device + ?Sized, const CONNS: usize> StaleAckRepair<'d, 't, D, CONNS> {
    /// Wrap `device`.
    pub fn new(device: &'d mut D, table: &'t StaleAckTable<CONNS>) -> Self {
        Self {
            inner: device,
            table,
        }
    }
}

impl<D: Device + ?Sized, const CONNS: usize> Device for StaleAckRepair<'_, '_, D, CONNS> {
    type RxToken<'a>
        = RxToken<'a, D::RxToken<'a>, CONNS>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D::TxToken<'a>, CONNS>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let medium = self.inner.capabilities().medium;
        let (rx, tx) = self.inner.receive(timestamp)?;
        Some((
            RxToken {
                inner: rx,
                table: self.table,
                medium,
            },
            TxToken {
                inner: tx,
                table: self.table,
                medium,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let medium = self.inner.capabilities().medium;
        let tx = self.inner.transmit(timestamp)?;
        Some(TxToken {
            inner: tx,
            table: self.table,
            medium,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A received frame, repaired on the way to the stack if it needs it.
#[derive(Debug)]
pub struct RxToken<'t, T, const CONNS: usize> {
    inner: T,
    table: &'t StaleAckTable<CONNS>,
    medium: Medium,
}

impl<T: phy::RxToken, const CONNS: usize> phy::RxToken for RxToken<'_, T, CONNS> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let table = self.table;
        let medium = self.medium;
        self.inner.consume(|frame| {
            let Some((seg, ack, window)) = table.incoming(medium, frame) else {
                return f(frame);
            };
            let Ok(mut scratch) = table.scratch.try_borrow_mut() else {
                return f(frame);
            };
            let Some(copy) = scratch.get_mut(..frame.len()) else {
                return f(frame);
            };
            copy.copy_from_slice(frame);
            let Some(mut tcp) = copy.get_mut(seg.at..).map(TcpPacket::new_unchecked) else {
                return f(frame);
            };
            tcp.set_ack_number(smoltcp::wire::TcpSeqNumber(ack as i32));
            tcp.set_window_len(window);
            tcp.fill_checksum(&seg.src, &seg.dst);
            table.repaired.set(table.repaired.get().wrapping_add(1));
            f(copy)
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

/// Room for one frame; what the stack writes into it is learnt from.
#[derive(Debug)]
pub struct TxToken<'t, T, const CONNS: usize> {
    inner: T,
    table: &'t StaleAckTable<CONNS>,
    medium: Medium,
}

impl<T: phy::TxToken, const CONNS: usize> phy::TxToken for TxToken<'_, T, CONNS> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let table = self.table;
        let medium = self.medium;
        self.inner.consume(len, |buf| {
            let result = f(buf);
            table.outgoing(medium, buf);
            result
        })
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.inner.set_meta(meta)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Ipv4Address, Ipv4Packet,
        Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber,
    };

    const US: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const PEER: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

    /// A frame from `src` to `dst` (ports 7 on our side, 40000 on the peer's).
    fn frame(
        from_peer: bool,
        control: TcpControl,
        seq: u32,
        ack: u32,
        win: u16,
        data: &[u8],
    ) -> Vec<u8> {
        let (src, dst, sport, dport) = if from_peer {
            (PEER, US, 40000, 7)
        } else {
            (US, PEER, 7, 40000)
        };
        let repr = TcpRepr {
            src_port: sport,
            dst_port: dport,
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: Some(TcpSeqNumber(ack as i32)),
            window_len: win,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: data,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 14 + ip.buffer_len() + repr.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut eth);
        let caps = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[14..]);
        ip.emit(&mut packet, &caps);
        repr.emit(
            &mut TcpPacket::new_unchecked(packet.payload_mut()),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &caps,
        );
        buf
    }

    fn tcp_of(frame: &[u8]) -> TcpPacket<&[u8]> {
        TcpPacket::new_checked(&frame[34..]).unwrap()
    }

    /// Apply a repair as the RxToken does; `None` when the frame passes untouched.
    fn repaired(table: &StaleAckTable<2>, frame: &[u8]) -> Option<Vec<u8>> {
        let (seg, ack, win) = table.incoming(Medium::Ethernet, frame)?;
        let mut copy = frame.to_vec();
        let mut tcp = TcpPacket::new_unchecked(&mut copy[seg.at..]);
        tcp.set_ack_number(TcpSeqNumber(ack as i32));
        tcp.set_window_len(win);
        tcp.fill_checksum(&seg.src, &seg.dst);
        Some(copy)
    }

    /// A connection where we sent SYN-ACK 1000 (ACKing the peer's 5000) and 3000 bytes.
    fn connected() -> StaleAckTable<2> {
        let table = StaleAckTable::new();
        table.outgoing(
            Medium::Ethernet,
            &frame(false, TcpControl::Syn, 1000, 5000, 8000, &[]),
        );
        table.outgoing(
            Medium::Ethernet,
            &frame(false, TcpControl::None, 1001, 5000, 8000, &[0; 3000]),
        );
        table
    }

    #[test]
    fn a_data_segment_with_a_stale_ack_gets_the_newest_ack_and_its_window() {
        let table = connected();
        // The newest ACK first (2001, window 900), then an older data segment (ACK 1501).
        assert!(repaired(&table, &frame(true, TcpControl::None, 5000, 2001, 900, &[])).is_none());
        let stale = frame(true, TcpControl::Psh, 5000, 1501, 700, b"hello");
        let fixed = repaired(&table, &stale).expect("repaired");
        let tcp = tcp_of(&fixed);
        assert_eq!(tcp.ack_number(), TcpSeqNumber(2001));
        assert_eq!(tcp.window_len(), 900);
        assert_eq!(tcp.payload(), b"hello");
        assert!(tcp.verify_checksum(&IpAddress::Ipv4(PEER), &IpAddress::Ipv4(US)));
        // A stale pure ACK carries nothing smoltcp could lose: untouched.
        assert!(repaired(&table, &frame(true, TcpControl::None, 5000, 1501, 700, &[])).is_none());
    }

    #[test]
    fn a_new_syn_forgets_the_old_connection() {
        let table = connected();
        assert!(repaired(&table, &frame(true, TcpControl::None, 5000, 2001, 900, &[])).is_none());
        // The same 4-tuple again: our SYN-ACK with another ISN starts afresh, so an ACK that
        // is old for the previous connection is not rewritten into this one.
        table.outgoing(
            Medium::Ethernet,
            &frame(false, TcpControl::Syn, 90000, 7000, 8000, &[]),
        );
        assert!(
            repaired(
                &table,
                &frame(true, TcpControl::Psh, 7000, 90001, 700, b"x")
            )
            .is_none()
        );
    }

    #[test]
    fn a_window_update_with_the_same_ack_is_what_a_repair_writes() {
        let table = connected();
        assert!(repaired(&table, &frame(true, TcpControl::None, 5000, 2001, 0, &[])).is_none());
        assert!(
            repaired(
                &table,
                &frame(true, TcpControl::None, 5000, 2001, 4000, &[])
            )
            .is_none()
        );
        let fixed = repaired(&table, &frame(true, TcpControl::Psh, 5000, 1501, 0, b"x")).unwrap();
        assert_eq!(tcp_of(&fixed).window_len(), 4000);
    }

    #[test]
    fn the_switch_turns_everything_off() {
        let table = connected();
        assert!(repaired(&table, &frame(true, TcpControl::None, 5000, 2001, 900, &[])).is_none());
        table.set_enabled(false);
        assert!(repaired(&table, &frame(true, TcpControl::Psh, 5000, 1501, 700, b"x")).is_none());
    }

    #[test]
    fn corrupted_unknown_and_impossible_segments_pass_untouched() {
        let table = connected();
        let newest = frame(true, TcpControl::None, 5000, 2001, 900, &[]);
        assert!(repaired(&table, &newest).is_none());
        let mut corrupted = frame(true, TcpControl::Psh, 5000, 1501, 700, b"hello");
        let last = corrupted.len() - 1;
        corrupted[last] ^= 1;
        assert!(repaired(&table, &corrupted).is_none());
        // An ACK beyond what we sent (4001) teaches nothing and repairs nothing.
        assert!(repaired(&table, &frame(true, TcpControl::None, 5000, 9999, 1, &[])).is_none());
        assert!(repaired(&table, &frame(true, TcpControl::Psh, 5000, 1501, 1, b"x")).is_some());
        // After the peer's RST the connection is forgotten.
        assert!(repaired(&table, &frame(true, TcpControl::Rst, 5000, 2001, 0, &[])).is_none());
        assert!(repaired(&table, &frame(true, TcpControl::Psh, 5000, 1501, 1, b"x")).is_none());
    }
}
