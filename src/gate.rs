//! The SYN gate: a `phy::Device` wrapper that implements the listen backlog.
//!
//! smoltcp answers a SYN with RST when no socket listens on its port. A Linux listener with a
//! full backlog does something kinder: it ignores the SYN, the client's kernel retransmits it
//! (after 1 s, 3 s, ...) and the client is served once a slot frees. [`SynGate`] gives the
//! echo server that behaviour without touching smoltcp: it sits between the device and the
//! interface for one `Interface::poll`, is told how many listeners are free, and holds back
//! every further *initial* SYN (SYN set, ACK clear) to the service port.
//!
//! **SYN-flood defence.** Under SYN pressure (every slot has been half-open for a while, see
//! [`SYN_PRESSURE_AFTER`](crate::tcp_server::SYN_PRESSURE_AFTER)), when no listener is free but
//! some slot is only half-open, a new initial SYN is not held: the gate keeps a copy
//! ([`GateState::take_pending`]) and the server recycles the oldest half-open slot for it and
//! feeds the copy back to the interface ([`Replay`]). Spoofed SYNs from hosts that never
//! answer thus cannot occupy every slot: a real client's SYN always finds a slot, and its
//! handshake completes as long as fewer than `SLOTS` newer SYNs arrive within its round trip.
//!
//! **Listen backlog.** With `Overflow::Defer` and a backlog (the `BACKLOG` parameter of
//! [`TcpEchoServer`](crate::TcpEchoServer)), a held SYN is also kept, one per client, and
//! replayed to the interface as soon as a listener frees: the client is served at once
//! instead of at its next retransmission, as by the accept queue of a Linux listener.
//!
//! It cannot drop anything else: a frame is held only when it parses completely as Ethernet
//! (or raw IP) + IPv4/IPv6 + TCP with that destination port and those flags. Fragments,
//! extension headers, malformed frames and every other protocol pass through untouched, to be
//! judged by smoltcp as usual. A held frame is handed to the interface as an empty buffer,
//! which every medium rejects as truncated before it reaches any state.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Duration;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint, IpProtocol, TcpPacket};

use crate::conn::elapsed;

/// What the server does with a SYN when every slot is busy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Overflow {
    /// Ignore the SYN, like a full Linux listen backlog: the client retransmits and is served
    /// when a slot frees.
    #[default]
    Defer,
    /// Let smoltcp answer RST: the client sees "connection refused".
    Refuse,
}

/// The largest SYN frame kept for replay: Ethernet + IPv4 with options + TCP with options
/// (14 + 60 + 60). Larger frames are not initial SYNs anyone sends; they are held instead.
pub const MAX_SYN_FRAME: usize = 134;

/// How long a SYN waits in the listen backlog before it is forgotten. The client has
/// retransmitted by then (after 1 s, then 3 s on Linux), and a retransmission takes the old
/// copy's place.
pub const BACKLOG_MAX_AGE: Duration = Duration::from_secs(3);

/// A SYN held back, kept to be replayed when a listener frees (the listen backlog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSyn {
    /// Who sent it.
    pub source: IpEndpoint,
    /// When the client's first SYN arrived: its place in the queue.
    pub first: Instant,
    /// When its latest retransmission arrived: its freshness.
    pub last: Instant,
    /// The latest frame as received.
    pub frame: heapless::Vec<u8, MAX_SYN_FRAME>,
}

/// The gate's budget and tallies for one interface poll, and a listen backlog of up to
/// `BACKLOG` held SYNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateState<const BACKLOG: usize = 0> {
    /// The service port whose SYNs are gated.
    pub port: u16,
    /// Defer holds SYNs beyond the budget; Refuse only counts them.
    pub overflow: Overflow,
    /// How many more SYNs may reach a listener in this poll.
    pub budget: usize,
    /// SYNs held back so far.
    pub held: u64,
    /// SYNs that found no listener with `Overflow::Refuse` so far.
    pub refused: u64,
    /// Whether a half-open slot could be recycled for a SYN that finds no listener.
    pub recyclable: bool,
    /// A SYN kept for replay once a half-open slot is recycled.
    pending: Option<heapless::Vec<u8, MAX_SYN_FRAME>>,
    /// The clock of the current poll.
    pub now: Instant,
    /// SYNs held with `Overflow::Defer`, one per client, in no particular order.
    backlog: [Option<HeldSyn>; BACKLOG],
}

impl<const BACKLOG: usize> GateState<BACKLOG> {
    /// A gate for `port` with an empty budget.
    pub const fn new(port: u16, overflow: Overflow) -> Self {
        Self {
            port,
            overflow,
            budget: 0,
            held: 0,
            refused: 0,
            recyclable: false,
            pending: None,
            now: Instant::ZERO,
            backlog: [const { None }; BACKLOG],
        }
    }

    /// The SYN kept for replay by the last frame, if any.
    pub fn take_pending(&mut self) -> Option<heapless::Vec<u8, MAX_SYN_FRAME>> {
        self.pending.take()
    }

    /// The longest-waiting SYN in the backlog that is still fresh; stale ones are dropped.
    pub fn take_held(&mut self) -> Option<HeldSyn> {
        let now = self.now;
        for entry in self.backlog.iter_mut() {
            if entry
                .as_ref()
                .is_some_and(|h| elapsed(h.last, now) >= BACKLOG_MAX_AGE)
            {
                *entry = None;
            }
        }
        self.backlog
            .iter_mut()
            .filter(|entry| entry.is_some())
            .min_by_key(|entry| entry.as_ref().map(|h| h.first))
            .and_then(Option::take)
    }

    /// SYNs waiting in the backlog (stale ones included until the next take).
    pub fn backlog_len(&self) -> usize {
        self.backlog.iter().filter(|entry| entry.is_some()).count()
    }

    /// Keep a copy of a held SYN. A retransmission from the same client replaces its earlier
    /// copy and keeps its place; when the backlog is full the longest-waiting copy makes room
    /// (its client has retransmitted less recently than the newcomer).
    fn keep(&mut self, medium: Medium, frame: &[u8]) {
        if BACKLOG == 0 {
            return;
        }
        let (Some(source), Ok(frame)) =
            (syn_source(medium, frame), heapless::Vec::from_slice(frame))
        else {
            return;
        };
        let now = self.now;
        if let Some(earlier) = self
            .backlog
            .iter_mut()
            .flatten()
            .find(|h| h.source == source)
        {
            earlier.last = now;
            earlier.frame = frame;
            return;
        }
        let place = match self.backlog.iter().position(Option::is_none) {
            Some(free) => free,
            None => (0..BACKLOG)
                .min_by_key(|&i| {
                    self.backlog
                        .get(i)
                        .and_then(|e| e.as_ref())
                        .map(|h| h.first)
                })
                .unwrap_or(0),
        };
        if let Some(entry) = self.backlog.get_mut(place) {
            *entry = Some(HeldSyn {
                source,
                first: now,
                last: now,
                frame,
            });
        }
    }

    /// Decide about one received frame: `true` lets it through.
    fn admit(&mut self, medium: Medium, frame: &[u8]) -> bool {
        if !is_initial_syn_to(medium, frame, self.port) {
            return true;
        }
        if self.budget > 0 {
            self.budget = self.budget.saturating_sub(1);
            return true;
        }
        if self.recyclable
            && self.pending.is_none()
            && let Ok(copy) = heapless::Vec::from_slice(frame)
        {
            self.pending = Some(copy);
            return false;
        }
        match self.overflow {
            Overflow::Defer => {
                self.held = self.held.wrapping_add(1);
                self.keep(medium, frame);
                false
            }
            Overflow::Refuse => {
                self.refused = self.refused.wrapping_add(1);
                true
            }
        }
    }
}

/// A device that gates initial SYNs to one port; see the [module docs](self).
#[derive(Debug)]
pub struct SynGate<'g, D: ?Sized, const BACKLOG: usize = 0> {
    inner: &'g mut D,
    state: &'g mut GateState<BACKLOG>,
}

impl<'g, D: Device + ?Sized, const BACKLOG: usize> SynGate<'g, D, BACKLOG> {
    /// Wrap `inner` for one poll, with the budget already set in `state`.
    pub fn new(inner: &'g mut D, state: &'g mut GateState<BACKLOG>) -> Self {
        Self { inner, state }
    }
}

impl<D: Device + ?Sized, const BACKLOG: usize> Device for SynGate<'_, D, BACKLOG> {
    type RxToken<'a>
        = GateRxToken<'a, D::RxToken<'a>, BACKLOG>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let medium = self.inner.capabilities().medium;
        let state = &mut *self.state;
        self.inner.receive(timestamp).map(|(rx, tx)| {
            (
                GateRxToken {
                    inner: rx,
                    state,
                    medium,
                },
                tx,
            )
        })
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A device that yields one saved frame, then nothing; transmissions go to the real device.
///
/// Used to hand a SYN kept by the gate back to the interface once a slot is free for it.
#[derive(Debug)]
pub struct Replay<'r, D: ?Sized> {
    inner: &'r mut D,
    frame: Option<&'r [u8]>,
}

impl<'r, D: Device + ?Sized> Replay<'r, D> {
    /// Replay `frame` once, answering through `inner`.
    pub fn new(inner: &'r mut D, frame: &'r [u8]) -> Self {
        Self {
            inner,
            frame: Some(frame),
        }
    }
}

impl<D: Device + ?Sized> Device for Replay<'_, D> {
    type RxToken<'a>
        = ReplayRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.frame.take()?;
        let tx = self.inner.transmit(timestamp)?;
        Some((ReplayRxToken(frame), tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// The receive token of a [`Replay`].
#[derive(Debug)]
pub struct ReplayRxToken<'a>(&'a [u8]);

impl phy::RxToken for ReplayRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

/// The receive token of a [`SynGate`].
#[derive(Debug)]
pub struct GateRxToken<'a, T, const BACKLOG: usize = 0> {
    inner: T,
    state: &'a mut GateState<BACKLOG>,
    medium: Medium,
}

impl<T: phy::RxToken, const BACKLOG: usize> phy::RxToken for GateRxToken<'_, T, BACKLOG> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let Self {
            inner,
            state,
            medium,
        } = self;
        inner.consume(|frame| {
            if state.admit(medium, frame) {
                f(frame)
            } else {
                f(&[])
            }
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

/// Whether `frame` is a well-formed initial SYN (SYN set, ACK clear) to TCP port `port`.
pub fn is_initial_syn_to(medium: Medium, frame: &[u8], port: u16) -> bool {
    match ip_payload(medium, frame) {
        Some((_, IpProtocol::Tcp, segment)) => match TcpPacket::new_checked(segment) {
            Ok(tcp) => tcp.syn() && !tcp.ack() && !tcp.rst() && tcp.dst_port() == port,
            Err(_) => false,
        },
        _ => false,
    }
}

/// The source address of the IP packet inside `frame` (for a SYN the gate kept).
pub fn source_address(medium: Medium, frame: &[u8]) -> Option<IpAddress> {
    ip_payload(medium, frame).map(|(source, _, _)| source)
}

/// The source address and TCP port of the segment inside `frame`.
pub fn syn_source(medium: Medium, frame: &[u8]) -> Option<IpEndpoint> {
    match ip_payload(medium, frame)? {
        (addr, IpProtocol::Tcp, segment) => {
            let tcp = TcpPacket::new_checked(segment).ok()?;
            Some(IpEndpoint::new(addr, tcp.src_port()))
        }
        _ => None,
    }
}

/// The source, transport protocol and payload of an unfragmented IP packet inside `frame`.
fn ip_payload(medium: Medium, frame: &[u8]) -> Option<(IpAddress, IpProtocol, &[u8])> {
    match medium {
        Medium::Ethernet => {
            let eth = smoltcp::wire::EthernetFrame::new_checked(frame).ok()?;
            match eth.ethertype() {
                smoltcp::wire::EthernetProtocol::Ipv4 => ipv4_payload(eth.payload()),
                #[cfg(feature = "proto-ipv6")]
                smoltcp::wire::EthernetProtocol::Ipv6 => ipv6_payload(eth.payload()),
                _ => None,
            }
        }
        // Raw IP: the version nibble tells the family.
        #[cfg(feature = "medium-ip")]
        Medium::Ip => match frame.first().map(|b| b >> 4) {
            Some(4) => ipv4_payload(frame),
            #[cfg(feature = "proto-ipv6")]
            Some(6) => ipv6_payload(frame),
            _ => None,
        },
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn ipv4_payload(packet: &[u8]) -> Option<(IpAddress, IpProtocol, &[u8])> {
    let ip = smoltcp::wire::Ipv4Packet::new_checked(packet).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    Some((
        IpAddress::Ipv4(ip.src_addr()),
        ip.next_header(),
        ip.payload(),
    ))
}

#[cfg(feature = "proto-ipv6")]
fn ipv6_payload(packet: &[u8]) -> Option<(IpAddress, IpProtocol, &[u8])> {
    let ip = smoltcp::wire::Ipv6Packet::new_checked(packet).ok()?;
    Some((
        IpAddress::Ipv6(ip.src_addr()),
        ip.next_header(),
        ip.payload(),
    ))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, Ipv4Address,
        Ipv4Packet, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber,
    };

    const PORT: u16 = 7;

    fn tcp(dst_port: u16, control: TcpControl, ack: bool) -> TcpRepr<'static> {
        TcpRepr {
            src_port: 40000,
            dst_port,
            control,
            seq_number: TcpSeqNumber(1),
            ack_number: ack.then_some(TcpSeqNumber(1)),
            window_len: 1024,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        }
    }

    fn v4_frame(repr: &TcpRepr<'_>) -> Vec<u8> {
        let src = Ipv4Address::new(10, 0, 0, 2);
        let dst = Ipv4Address::new(10, 0, 0, 1);
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + repr.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut frame = EthernetFrame::new_unchecked(&mut buf);
        eth.emit(&mut frame);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet, &caps);
        let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
        repr.emit(
            &mut segment,
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &caps,
        );
        buf
    }

    #[test]
    fn only_an_initial_syn_to_the_port_is_recognised() {
        let cases = [
            (PORT, TcpControl::Syn, false, true),
            (PORT, TcpControl::Syn, true, false),
            (PORT + 1, TcpControl::Syn, false, false),
            (PORT, TcpControl::None, true, false),
            (PORT, TcpControl::Rst, false, false),
            (PORT, TcpControl::Fin, true, false),
        ];
        for (port, control, ack, expected) in cases {
            let frame = v4_frame(&tcp(port, control, ack));
            assert_eq!(
                is_initial_syn_to(Medium::Ethernet, &frame, PORT),
                expected,
                "port {port}, {control:?}, ack {ack}"
            );
        }
    }

    #[test]
    fn malformed_truncated_and_fragmented_frames_are_never_taken_for_a_syn() {
        let eth = Medium::Ethernet;
        let syn = v4_frame(&tcp(PORT, TcpControl::Syn, false));
        for cut in 0..syn.len() {
            assert!(!is_initial_syn_to(eth, &syn[..cut], PORT), "cut at {cut}");
        }
        assert!(!is_initial_syn_to(eth, &[], PORT));
        // A fragment: set "more fragments".
        let mut frag = syn.clone();
        frag[14 + 6] |= 0x20;
        assert!(!is_initial_syn_to(eth, &frag, PORT));
        // Flags byte with SYN|RST.
        let mut syn_rst = syn.clone();
        syn_rst[14 + 20 + 13] |= 0x04;
        assert!(!is_initial_syn_to(eth, &syn_rst, PORT));
    }

    #[test]
    fn the_budget_admits_that_many_syns_then_defer_holds_the_rest() {
        let syn = v4_frame(&tcp(PORT, TcpControl::Syn, false));
        let other = v4_frame(&tcp(PORT, TcpControl::None, true));
        let mut gate = GateState::<0>::new(PORT, Overflow::Defer);
        gate.budget = 2;
        assert!(gate.admit(Medium::Ethernet, &syn));
        assert!(
            gate.admit(Medium::Ethernet, &other),
            "not a SYN: no budget used"
        );
        assert!(gate.admit(Medium::Ethernet, &syn));
        assert!(!gate.admit(Medium::Ethernet, &syn));
        assert!(
            gate.admit(Medium::Ethernet, &other),
            "everything else always passes"
        );
        assert_eq!((gate.budget, gate.held, gate.refused), (0, 1, 0));
    }

    #[test]
    fn refuse_passes_the_syn_to_smoltcp_and_counts_it() {
        let syn = v4_frame(&tcp(PORT, TcpControl::Syn, false));
        let mut gate = GateState::<0>::new(PORT, Overflow::Refuse);
        assert!(gate.admit(Medium::Ethernet, &syn));
        assert_eq!((gate.held, gate.refused), (0, 1));
    }

    #[cfg(feature = "proto-ipv6")]
    #[test]
    fn an_ipv6_syn_is_recognised() {
        use smoltcp::wire::{Ipv6Address, Ipv6Packet, Ipv6Repr};
        let repr = tcp(PORT, TcpControl::Syn, false);
        let src = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 2);
        let dst = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 14 + ip.buffer_len() + repr.buffer_len()];
        let mut frame = EthernetFrame::new_unchecked(&mut buf);
        frame.set_ethertype(EthernetProtocol::Ipv6);
        let mut packet = Ipv6Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet);
        let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
        repr.emit(
            &mut segment,
            &IpAddress::Ipv6(src),
            &IpAddress::Ipv6(dst),
            &ChecksumCapabilities::default(),
        );
        assert!(is_initial_syn_to(Medium::Ethernet, &buf, PORT));
        assert!(!is_initial_syn_to(Medium::Ethernet, &buf, PORT + 1));
    }
}
