//! The echo node: the TCP and UDP echo servers behind one poll entry point.

use smoltcp::iface::{Interface, SocketSet};
use smoltcp::phy::Device;
use smoltcp::time::{Duration, Instant};

use crate::Error;
use crate::counters::{TcpCounters, UdpCounters};
use crate::sockets::Sockets;
#[cfg(feature = "stale-ack-repair")]
use crate::stale_ack::{StaleAckRepair, StaleAckTable};
use crate::tcp_server::{TcpConfig, TcpEchoServer, TcpEchoStorage};
use crate::udp_server::{UdpConfig, UdpEchoServer, UdpEchoStorage};

/// A TCP echo server with `SLOTS` slots (and a listen backlog of `BACKLOG` SYNs, see
/// [`TcpEchoServer`]) and a UDP echo server, polled together.
#[derive(Debug)]
pub struct EchoNode<'a, const SLOTS: usize, const BACKLOG: usize = 0> {
    tcp: TcpEchoServer<SLOTS, BACKLOG>,
    udp: UdpEchoServer<'a>,
    /// Keeps reordered client segments from being dropped by smoltcp (see [`stale_ack`]).
    ///
    /// [`stale_ack`]: crate::stale_ack
    #[cfg(feature = "stale-ack-repair")]
    stale_acks: StaleAckTable<SLOTS>,
}

impl<'a, const SLOTS: usize> EchoNode<'a, SLOTS> {
    /// Create both services' sockets in `sockets`. The TCP server has no listen backlog; see
    /// [`with_backlog`](Self::with_backlog).
    pub fn new<const RX: usize, const TX: usize, const PACKETS: usize, const BYTES: usize>(
        tcp: (TcpConfig, &'a mut TcpEchoStorage<SLOTS, RX, TX>),
        udp: (UdpConfig, &'a mut UdpEchoStorage<PACKETS, BYTES>),
        sockets: &mut Sockets<'a>,
    ) -> Result<Self, Error> {
        Self::with_backlog(tcp, udp, sockets)
    }
}

impl<'a, const SLOTS: usize, const BACKLOG: usize> EchoNode<'a, SLOTS, BACKLOG> {
    /// Like [`new`](EchoNode::new), with a listen backlog of `BACKLOG` SYNs (name it:
    /// `EchoNode::<8, 64>::with_backlog(...)`).
    pub fn with_backlog<
        const RX: usize,
        const TX: usize,
        const PACKETS: usize,
        const BYTES: usize,
    >(
        tcp: (TcpConfig, &'a mut TcpEchoStorage<SLOTS, RX, TX>),
        udp: (UdpConfig, &'a mut UdpEchoStorage<PACKETS, BYTES>),
        sockets: &mut Sockets<'a>,
    ) -> Result<Self, Error> {
        if sockets.free() < SLOTS.saturating_add(1) {
            return Err(Error::SocketSetFull);
        }
        Ok(Self {
            tcp: TcpEchoServer::with_backlog(tcp.0, tcp.1, sockets)?,
            udp: UdpEchoServer::new(udp.0, udp.1, sockets)?,
            #[cfg(feature = "stale-ack-repair")]
            stale_acks: StaleAckTable::new(),
        })
    }

    /// A node of two servers built separately (for example with
    /// [`UdpEchoServer::from_parts`]).
    pub fn from_servers(tcp: TcpEchoServer<SLOTS, BACKLOG>, udp: UdpEchoServer<'a>) -> Self {
        Self {
            tcp,
            udp,
            #[cfg(feature = "stale-ack-repair")]
            stale_acks: StaleAckTable::new(),
        }
    }

    /// Turn the stale-ACK repair off (`false`) or on again (the default). Off, smoltcp drops
    /// every client data segment overtaken by a newer ACK (see [`stale_ack`]); this switch is
    /// there to measure that.
    ///
    /// [`stale_ack`]: crate::stale_ack
    #[cfg(feature = "stale-ack-repair")]
    pub fn set_stale_ack_repair(&mut self, on: bool) {
        self.stale_acks.set_enabled(on);
    }

    /// Client segments repaired so far.
    #[cfg(feature = "stale-ack-repair")]
    pub fn stale_acks_repaired(&self) -> u64 {
        self.stale_acks.repaired()
    }

    /// The TCP server.
    pub fn tcp(&self) -> &TcpEchoServer<SLOTS, BACKLOG> {
        &self.tcp
    }

    /// The UDP server.
    pub fn udp(&self) -> &UdpEchoServer<'a> {
        &self.udp
    }

    /// TCP counters.
    pub fn tcp_counters(&self) -> TcpCounters {
        self.tcp.counters()
    }

    /// UDP counters.
    pub fn udp_counters(&self) -> UdpCounters {
        self.udp.counters()
    }

    /// Receive what the device has, echo it, and transmit the echoes. Returns whether
    /// anything progressed. Call it again no later than [`poll_at`](Self::poll_at).
    pub fn poll<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        device: &mut D,
        sockets: &mut SocketSet<'_>,
    ) -> bool {
        let udp = &mut self.udp;
        let also = |sockets: &mut SocketSet<'_>| udp.service(now, sockets);
        #[cfg(feature = "stale-ack-repair")]
        let device = &mut StaleAckRepair::new(device, &self.stale_acks);
        self.tcp.pump(now, iface, device, sockets, also)
    }

    /// When [`poll`](Self::poll) must run next without network activity (`None`: only when a
    /// frame arrives). May be in the past: then poll at once.
    pub fn poll_at(
        &self,
        now: Instant,
        iface: &mut Interface,
        sockets: &SocketSet<'_>,
    ) -> Option<Instant> {
        [
            iface.poll_at(now, sockets),
            self.tcp.poll_at(),
            self.udp.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// How long the caller may sleep before [`poll`](Self::poll) (`None`: until a frame
    /// arrives).
    pub fn poll_delay(
        &self,
        now: Instant,
        iface: &mut Interface,
        sockets: &SocketSet<'_>,
    ) -> Option<Duration> {
        self.poll_at(now, iface, sockets)
            .map(|at| crate::conn::elapsed(now, at))
    }
}
