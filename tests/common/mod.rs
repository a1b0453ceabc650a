//! A two-host world on the simulated link: an echo node (server, side A) and a client host
//! (side B), with a manual clock. Storage is leaked so it can be `'static`, as in firmware.

#![allow(dead_code)]

pub mod linux_peer;

use smolecho::sim::{self, Link, Side};
use smolecho::smoltcp::iface::{Interface, SocketSet, SocketStorage};
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::{IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv6Address};
use smolecho::{
    EchoNode, Sockets, TcpClientConfig, TcpClientStorage, TcpConfig, TcpEchoClient, TcpOutcome,
    TcpStorage, UdpClientConfig, UdpClientStorage, UdpConfig, UdpEchoClient, UdpStorage,
};

pub const PORT: u16 = 7;
pub const SERVER_V4: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
pub const CLIENT_V4: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
pub const SERVER_V6: Ipv6Address = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
pub const CLIENT_V6: Ipv6Address = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 2);

/// Frames each direction of the link can hold.
pub const LINK_FRAMES: usize = 128;

pub fn leak<T>(value: T) -> &'static mut T {
    Box::leak(Box::new(value))
}

pub fn server_v4() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(SERVER_V4), PORT)
}

pub fn server_v6() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv6(SERVER_V6), PORT)
}

pub struct World<const SLOTS: usize, const BACKLOG: usize = 0> {
    pub now: Instant,
    pub link: Box<Link<LINK_FRAMES>>,
    pub server_iface: Interface,
    pub server_sockets: Sockets<'static>,
    pub node: EchoNode<'static>,
    pub client_iface: Interface,
    pub client_sockets: Sockets<'static>,
    /// How far the clock moves per round while frames are in flight (1 ms unless set). A
    /// link with [`Delay`](smolecho::sim::Delay)s needs finer steps (100 µs): the clock also
    /// jumps to the next frame's release when a round moved nothing.
    pub step: Duration,
}

/// A client-side actor the world drives every step.
pub trait Actor {
    /// Advance; return whether anything progressed.
    fn step(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
    ) -> bool;
    /// The actor's next deadline.
    fn poll_at(&self) -> Option<Instant>;
    /// Whether the actor is done (the world stops when every actor is).
    fn finished(&self) -> bool {
        false
    }
}

impl<const SLOTS: usize> World<SLOTS> {
    /// A world with a server of `SLOTS` slots, `RX`/`TX` bytes each, and a UDP service with
    /// 8 datagrams of `UDP` bytes.
    pub fn new<const RX: usize, const TX: usize, const UDP: usize>(tcp: TcpConfig) -> Self {
        Self::with_udp::<RX, TX, 8, UDP>(tcp)
    }

    pub fn with_udp<const RX: usize, const TX: usize, const PACKETS: usize, const UDP: usize>(
        tcp: TcpConfig,
    ) -> Self {
        Self::on_link::<RX, TX, PACKETS, UDP>(Box::new(Link::new()), tcp)
    }

    /// A world on a prepared link (MTUs must be set before the interfaces exist).
    pub fn on_link<const RX: usize, const TX: usize, const PACKETS: usize, const UDP: usize>(
        link: Box<Link<LINK_FRAMES>>,
        tcp: TcpConfig,
    ) -> Self {
        World::<SLOTS>::build::<RX, TX, PACKETS, UDP>(link, tcp)
    }
}

impl<const SLOTS: usize, const BACKLOG: usize> World<SLOTS, BACKLOG> {
    /// A world whose server has a listen backlog of `BACKLOG` SYNs.
    pub fn with_backlog<const RX: usize, const TX: usize, const UDP: usize>(
        tcp: TcpConfig,
    ) -> Self {
        Self::build::<RX, TX, 8, UDP>(Box::new(Link::new()), tcp)
    }

    /// A world with a listen backlog on a prepared link.
    pub fn with_backlog_on_link<const RX: usize, const TX: usize, const UDP: usize>(
        link: Box<Link<LINK_FRAMES>>,
        tcp: TcpConfig,
    ) -> Self {
        Self::build::<RX, TX, 8, UDP>(link, tcp)
    }

    fn build<const RX: usize, const TX: usize, const PACKETS: usize, const UDP: usize>(
        mut link: Box<Link<LINK_FRAMES>>,
        tcp: TcpConfig,
    ) -> Self {
        let now = Instant::ZERO;
        let addrs_s = [
            IpCidr::new(IpAddress::Ipv4(SERVER_V4), 16),
            IpCidr::new(IpAddress::Ipv6(SERVER_V6), 64),
        ];
        let addrs_c = [
            IpCidr::new(IpAddress::Ipv4(CLIENT_V4), 16),
            IpCidr::new(IpAddress::Ipv6(CLIENT_V6), 64),
        ];
        let server_iface = sim::interface(&mut link.end(Side::A), 1, &addrs_s, now);
        let client_iface = sim::interface(&mut link.end(Side::B), 2, &addrs_c, now);
        let mut server_sockets = Sockets::new(leak([SocketStorage::EMPTY; 160]).as_mut_slice());
        let client_sockets = Sockets::new(leak([SocketStorage::EMPTY; 160]).as_mut_slice());
        let node = EchoNode::new(
            &mut server_sockets,
            tcp,
            leak(TcpStorage::<SLOTS, RX, TX, BACKLOG>::new()).buffers(),
            UdpConfig::on_port(PORT),
            leak(UdpStorage::<PACKETS, UDP>::new()).buffers(),
        )
        .expect("node fits");
        Self {
            now,
            link,
            server_iface,
            server_sockets,
            node,
            client_iface,
            client_sockets,
            step: Duration::from_millis(1),
        }
    }

    /// One round: server, then clients, then the actors. Returns whether anything moved.
    pub fn step(&mut self, actors: &mut [&mut dyn Actor]) -> bool {
        let now = self.now;
        let mut moved = self.node.poll(
            now,
            &mut self.server_iface,
            &mut self.link.end(Side::A),
            &mut self.server_sockets,
        );
        for _ in 0..4 {
            let polled =
                self.client_iface
                    .poll(now, &mut self.link.end(Side::B), &mut self.client_sockets)
                    != smolecho::smoltcp::iface::PollResult::None;
            let mut acted = false;
            for actor in actors.iter_mut() {
                acted |= actor.step(now, &mut self.client_iface, &mut self.client_sockets);
            }
            moved |= polled | acted;
            if !acted {
                break;
            }
        }
        moved
    }

    /// The next instant anything needs attention, if the link is idle.
    fn next_deadline(&mut self, actors: &[&mut dyn Actor]) -> Option<Instant> {
        let mut at = self
            .node
            .poll_at(self.now, &mut self.server_iface, &self.server_sockets);
        let mut merge = |t: Option<Instant>| {
            at = match (at, t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        merge(self.client_iface.poll_at(self.now, &self.client_sockets));
        for actor in actors {
            merge(actor.poll_at());
        }
        at
    }

    /// Run until `done` holds, every actor finished, or `limit` of simulated time passes. Time moves 1 ms per round
    /// while frames are in flight and jumps to the next deadline when the link is idle.
    /// Returns whether `done` held.
    pub fn run_until(
        &mut self,
        actors: &mut [&mut dyn Actor],
        limit: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now <= end {
            let moved = self.step(actors);
            if done(self) || (!actors.is_empty() && actors.iter().all(|a| a.finished())) {
                return true;
            }
            let deadline = self.next_deadline(actors);
            self.now = self.advance(moved, deadline, end);
        }
        false
    }

    /// The next instant of the clock after a round: a step while anything moved or frames
    /// are queued, else the next delayed frame's release or the next deadline.
    fn advance(&self, moved: bool, deadline: Option<Instant>, end: Instant) -> Instant {
        let tick = self.now + self.step;
        let after_end = end + Duration::from_millis(1);
        let release = self.link.next_release();
        let queued_now = !self.link.is_idle() && release.is_none();
        if moved || queued_now {
            return tick;
        }
        let next = match (release, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next {
            Some(at) if at > tick => at.min(after_end),
            Some(_) => tick,
            None => after_end,
        }
    }

    /// One round with a peer that talks on link end B itself (instead of the client
    /// interface): server, then the peer. Returns whether anything moved.
    pub fn step_wire(&mut self, peer: &mut dyn linux_peer::WirePeer) -> bool {
        let now = self.now;
        let mut moved = self.node.poll(
            now,
            &mut self.server_iface,
            &mut self.link.end(Side::A),
            &mut self.server_sockets,
        );
        moved |= peer.step(now, &mut self.link);
        moved
    }

    /// Like [`run_until`](Self::run_until), with a wire peer on end B instead of the client
    /// interface and its actors. Returns whether `done` held or the peer finished.
    pub fn run_wire(
        &mut self,
        peer: &mut dyn linux_peer::WirePeer,
        limit: Duration,
        mut done: impl FnMut(&mut Self, &dyn linux_peer::WirePeer) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now <= end {
            let moved = self.step_wire(peer);
            if done(self, peer) || peer.finished() {
                return true;
            }
            let server = self
                .node
                .poll_at(self.now, &mut self.server_iface, &self.server_sockets);
            let deadline = match (server, peer.poll_at()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.now = self.advance(moved, deadline, end);
        }
        false
    }

    /// Run for `span` of simulated time.
    pub fn run_for(&mut self, actors: &mut [&mut dyn Actor], span: Duration) {
        self.run_until(actors, span, |_| false);
    }
}

/// A TCP echo client as an actor that connects on its first step at or after `start_at`.
pub struct TcpRun {
    pub client: TcpEchoClient<'static>,
    pub remote: IpEndpoint,
    pub local_port: u16,
    pub message: &'static [u8],
    pub start_at: Instant,
    pub started: bool,
    /// Runs still to start back-to-back, each from the next local port, in the same step
    /// the previous one finished (so its last ACK and the new SYN leave together).
    pub repeats: u32,
    /// Outcomes of the finished runs, oldest first.
    pub outcomes: Vec<TcpOutcome>,
}

impl TcpRun {
    pub fn new<const RX: usize, const TX: usize>(
        sockets: &mut Sockets<'static>,
        config: TcpClientConfig,
        remote: IpEndpoint,
        local_port: u16,
        message: &'static [u8],
    ) -> Self {
        let client = TcpEchoClient::new(config, leak(TcpClientStorage::<RX, TX>::new()), sockets)
            .expect("client fits");
        Self {
            client,
            remote,
            local_port,
            message,
            start_at: Instant::ZERO,
            started: false,
            repeats: 0,
            outcomes: Vec::new(),
        }
    }

    pub fn outcome(&self) -> Option<TcpOutcome> {
        if self.started {
            self.client.outcome()
        } else {
            None
        }
    }

    /// Finished: outcome known and the close handshake over.
    pub fn finished(&self) -> bool {
        self.started && self.repeats == 0 && self.client.is_idle()
    }
}

impl Actor for TcpRun {
    fn step(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        if !self.started {
            if now < self.start_at {
                return false;
            }
            self.client
                .connect(
                    now,
                    iface,
                    sockets,
                    self.remote,
                    self.local_port,
                    self.message,
                )
                .expect("connect");
            self.started = true;
            return true;
        }
        let progressed = self.client.service(now, sockets);
        if self.client.is_idle() && progressed {
            if let Some(outcome) = self.client.outcome() {
                self.outcomes.push(outcome);
            }
            if self.repeats > 0 {
                self.repeats -= 1;
                self.local_port += 1;
                self.client
                    .connect(
                        now,
                        iface,
                        sockets,
                        self.remote,
                        self.local_port,
                        self.message,
                    )
                    .expect("connect");
            }
        }
        progressed
    }

    fn poll_at(&self) -> Option<Instant> {
        if self.started {
            self.client.poll_at()
        } else {
            Some(self.start_at)
        }
    }

    fn finished(&self) -> bool {
        TcpRun::finished(self)
    }
}

/// A UDP echo client as an actor that sends on its first step.
pub struct UdpRun {
    pub client: UdpEchoClient<'static>,
    pub remote: IpEndpoint,
    pub message: &'static [u8],
    pub started: bool,
}

impl UdpRun {
    pub fn new<const BYTES: usize>(
        sockets: &mut Sockets<'static>,
        config: UdpClientConfig,
        local_port: u16,
        remote: IpEndpoint,
        message: &'static [u8],
    ) -> Self {
        let client = UdpEchoClient::new(
            config,
            local_port,
            leak(UdpClientStorage::<4, BYTES>::new()),
            sockets,
        )
        .expect("client fits");
        Self {
            client,
            remote,
            message,
            started: false,
        }
    }
}

impl Actor for UdpRun {
    fn step(
        &mut self,
        now: Instant,
        _iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        if !self.started {
            self.client
                .send(now, sockets, self.remote, self.message)
                .expect("send");
            self.started = true;
            return true;
        }
        self.client.service(now, sockets)
    }

    fn poll_at(&self) -> Option<Instant> {
        self.client.poll_at()
    }

    fn finished(&self) -> bool {
        self.started && !self.client.is_waiting()
    }
}

/// A deterministic byte pattern that does not repeat at buffer-sized periods.
pub fn pattern(len: usize) -> &'static [u8] {
    let mut x: u32 = 0x1234_5678;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    Box::leak(bytes.into_boxed_slice())
}

/// A hand-driven TCP peer: it streams `message` as the window allows, reads only while
/// `reading` is set, and checks what it reads against the message.
pub struct RawTcp {
    pub handle: smolecho::smoltcp::iface::SocketHandle,
    pub remote: IpEndpoint,
    pub local_port: u16,
    pub message: &'static [u8],
    pub sent: usize,
    pub received: usize,
    pub reading: bool,
    pub mismatch: bool,
    pub connected: bool,
    /// Abort (RST) the connection at this instant.
    pub abort_at: Option<Instant>,
    pub aborted: bool,
}

impl RawTcp {
    pub fn new<const RX: usize, const TX: usize>(
        sockets: &mut Sockets<'static>,
        remote: IpEndpoint,
        local_port: u16,
        message: &'static [u8],
    ) -> Self {
        use smolecho::smoltcp::socket::tcp;
        let rx = leak([0u8; RX]).as_mut_slice();
        let tx = leak([0u8; TX]).as_mut_slice();
        let socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        let handle = sockets.add(socket).expect("room");
        Self {
            handle,
            remote,
            local_port,
            message,
            sent: 0,
            received: 0,
            reading: true,
            mismatch: false,
            connected: false,
            abort_at: None,
            aborted: false,
        }
    }

    pub fn socket<'s>(
        &self,
        sockets: &'s mut SocketSet<'static>,
    ) -> &'s mut smolecho::smoltcp::socket::tcp::Socket<'static> {
        sockets.get_mut(self.handle)
    }
}

impl Actor for RawTcp {
    fn step(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        let _ = now;
        let socket: &mut smolecho::smoltcp::socket::tcp::Socket<'static> =
            sockets.get_mut(self.handle);
        if !self.connected {
            socket
                .connect(iface.context(), self.remote, self.local_port)
                .expect("connect");
            self.connected = true;
            return true;
        }
        let mut acted = false;
        if let Some(rest) = self.message.get(self.sent..)
            && !rest.is_empty()
            && socket.can_send()
        {
            let n = socket.send_slice(rest).unwrap_or(0);
            self.sent += n;
            acted |= n > 0;
        }
        if self.reading {
            while socket.can_recv() {
                let expected = &self.message[self.received..];
                let n = socket
                    .recv(|got| {
                        let n = got.len();
                        (
                            n,
                            (
                                n,
                                got.len() <= expected.len() && got == &expected[..got.len()],
                            ),
                        )
                    })
                    .map(|(n, ok)| {
                        if !ok {
                            self.mismatch = true;
                        }
                        n
                    })
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                self.received += n;
                acted = true;
            }
        }
        acted
    }

    fn poll_at(&self) -> Option<Instant> {
        None
    }
}
