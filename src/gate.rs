//! The SYN gate: a `phy::Device` wrapper that implements the listen backlog.
//!
//! smoltcp answers a SYN with RST when no socket listens on its port. A Linux listener with a
//! full backlog does something kinder: it ignores the SYN, the client's kernel retransmits it
//! (after 1 s, 3 s, ...) and the client is served once a slot frees. [`SynGate`] gives the
//! echo server that behaviour without touching smoltcp: it sits between the device and the
//! interface for one `Interface::poll`, is told how many listeners are free, and holds back
//! every further *initial* SYN (SYN set, ACK clear) to the service port.
//!
//! It cannot drop anything else: a frame is held only when it parses completely as Ethernet
//! (or raw IP) + IPv4/IPv6 + TCP with that destination port and those flags. Fragments,
//! extension headers, malformed frames and every other protocol pass through untouched, to be
//! judged by smoltcp as usual. A held frame is handed to the interface as an empty buffer,
//! which every medium rejects as truncated before it reaches any state.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{IpProtocol, TcpPacket};

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

/// The gate's budget and tallies for one interface poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GateState {
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
}

impl GateState {
    /// A gate for `port` with an empty budget.
    pub const fn new(port: u16, overflow: Overflow) -> Self {
        Self {
            port,
            overflow,
            budget: 0,
            held: 0,
            refused: 0,
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
        match self.overflow {
            Overflow::Defer => {
                self.held = self.held.wrapping_add(1);
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
pub struct SynGate<'g, D: ?Sized> {
    inner: &'g mut D,
    state: &'g mut GateState,
}

impl<'g, D: Device + ?Sized> SynGate<'g, D> {
    /// Wrap `inner` for one poll, with the budget already set in `state`.
    pub fn new(inner: &'g mut D, state: &'g mut GateState) -> Self {
        Self { inner, state }
    }
}

impl<D: Device + ?Sized> Device for SynGate<'_, D> {
    type RxToken<'a>
        = GateRxToken<'a, D::RxToken<'a>>
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

/// The receive token of a [`SynGate`].
#[derive(Debug)]
pub struct GateRxToken<'a, T> {
    inner: T,
    state: &'a mut GateState,
    medium: Medium,
}

impl<T: phy::RxToken> phy::RxToken for GateRxToken<'_, T> {
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
        Some((IpProtocol::Tcp, segment)) => match TcpPacket::new_checked(segment) {
            Ok(tcp) => tcp.syn() && !tcp.ack() && !tcp.rst() && tcp.dst_port() == port,
            Err(_) => false,
        },
        _ => false,
    }
}

/// The transport protocol and payload of an unfragmented IP packet inside `frame`.
fn ip_payload(medium: Medium, frame: &[u8]) -> Option<(IpProtocol, &[u8])> {
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

fn ipv4_payload(packet: &[u8]) -> Option<(IpProtocol, &[u8])> {
    let ip = smoltcp::wire::Ipv4Packet::new_checked(packet).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    Some((ip.next_header(), ip.payload()))
}

#[cfg(feature = "proto-ipv6")]
fn ipv6_payload(packet: &[u8]) -> Option<(IpProtocol, &[u8])> {
    let ip = smoltcp::wire::Ipv6Packet::new_checked(packet).ok()?;
    Some((ip.next_header(), ip.payload()))
}
