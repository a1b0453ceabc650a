//! The network side: the interface, the socket set, the echo node and (feature `dhcp`) the
//! DHCPv4 client, all in statics.

use core::mem::MaybeUninit;
use smolecho::{EchoNode, Sockets, TcpConfig, TcpStorage};
use smolecho::{TcpCounters, UdpCounters};
use smolecho::{UdpBuffers, UdpConfig};
use smoltcp::iface::{Config, Interface, SocketStorage};
use smoltcp::socket::udp::PacketMetadata;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use static_cell::{ConstStaticCell, StaticCell};

use crate::board::Eth;

/// The echo service port (RFC 862).
pub const PORT: u16 = 7;
/// TCP connection slots.
pub const SLOTS: usize = 4;
/// Receive and transmit buffer bytes per TCP slot.
pub const TCP_RX: usize = 2048;
/// See [`TCP_RX`].
pub const TCP_TX: usize = 2048;
/// UDP datagrams queued each way. The payload ring holds one largest datagram each way, so
/// more entries would only help bursts of small datagrams (16 bytes of RAM and flash each).
pub const UDP_PACKETS: usize = 2;
/// The largest UDP datagram echoed: a full 1500-byte IPv4 packet.
pub const UDP_BYTES: usize = 1472;
/// A connection with no byte moving this long is aborted.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The static IPv4 setup, QEMU user networking's defaults.
pub const STATIC_V4: Ipv4Cidr = Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24);
/// The default gateway of the static setup.
pub const GATEWAY_V4: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

const SOCKETS: usize = SLOTS + 1 + cfg!(feature = "dhcp") as usize;

// The big buffers are built at compile time (ConstStaticCell), never on the stack.
static TCP_STORAGE: ConstStaticCell<TcpStorage<SLOTS, TCP_RX, TCP_TX>> =
    ConstStaticCell::new(TcpStorage::new());
// The UDP storage in two parts: smoltcp's empty packet metadata is not all zeroes (it holds
// enum tags), so it lands in .data and costs its size in flash too, but it is small; the
// payload buffers (receive, transmit, and one datagram being turned around) are zeroes and
// stay in .bss.
static UDP_META: ConstStaticCell<[PacketMetadata; 2 * UDP_PACKETS]> =
    ConstStaticCell::new([PacketMetadata::EMPTY; 2 * UDP_PACKETS]);
static UDP_PAYLOADS: ConstStaticCell<[u8; 3 * UDP_BYTES]> =
    ConstStaticCell::new([0; 3 * UDP_BYTES]);
// The socket storage is not all zeroes either, but each entry is only a tag: it is written
// entry by entry at boot, in place (see `socket_storage`), and stays in .bss.
static SOCKET_STORAGE: StaticCell<[MaybeUninit<SocketStorage<'static>>; SOCKETS]> =
    StaticCell::new();
static IFACE: StaticCell<Interface> = StaticCell::new();
static NET: StaticCell<Net> = StaticCell::new();

/// What changed in the IPv4 setup during a poll (DHCP only).
#[cfg_attr(not(feature = "dhcp"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// An address (and maybe a gateway) was configured.
    Configured(Ipv4Cidr, Option<Ipv4Address>),
    /// The lease was lost.
    Deconfigured,
}

/// Everything network, built once at boot.
pub struct Net {
    dev: &'static mut Eth,
    iface: &'static mut Interface,
    sockets: Sockets<'static>,
    node: EchoNode<'static>,
    #[cfg(feature = "dhcp")]
    dhcp: smoltcp::iface::SocketHandle,
}

impl Net {
    /// Build the interface and the services over `dev`, whose station address is `mac`.
    /// Returns `None` only if the statics were already taken or the socket set is too small,
    /// which the constants above rule out.
    ///
    /// Out of line, like [`poll`](Self::poll): the temporaries built here (sockets on their
    /// way into the set, the servers before they move into `NET`) then never sit on the stack
    /// under the main loop's frames, nor the main loop's under them.
    #[inline(never)]
    pub fn new(dev: &'static mut Eth, mac: [u8; 6], now: Instant) -> Option<&'static mut Net> {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        let [a, b, c, d, e, f] = mac;
        let entropy = u64::from(dev.free_run());
        config.random_seed = entropy << 32 ^ u64::from_le_bytes([a, b, c, d, e, f, 0, 0]);
        let iface = IFACE.try_init_with(|| Interface::new(config, dev, now))?;
        iface.update_ip_addrs(|addrs| {
            #[cfg(not(feature = "dhcp"))]
            let _ = addrs.push(IpCidr::Ipv4(STATIC_V4));
            #[cfg(feature = "ipv6")]
            let _ = addrs.push(IpCidr::Ipv6(crate::net::V6_ADDR));
            let _ = addrs;
        });
        #[cfg(not(feature = "dhcp"))]
        iface.routes_mut().add_default_ipv4_route(GATEWAY_V4).ok()?;
        #[cfg(feature = "ipv6")]
        iface.routes_mut().add_default_ipv6_route(V6_GATEWAY).ok()?;

        let mut sockets = Sockets::new(socket_storage()?);
        #[cfg(feature = "dhcp")]
        let dhcp = sockets.add(smoltcp::socket::dhcpv4::Socket::new()).ok()?;
        let tcp = TcpConfig {
            idle_timeout: Some(IDLE_TIMEOUT),
            ..TcpConfig::on_port(PORT)
        };
        let udp = UdpBuffers::new(UDP_META.try_take()?, UDP_PAYLOADS.try_take()?);
        let node = EchoNode::new(
            &mut sockets,
            tcp,
            TCP_STORAGE.try_take()?.buffers(),
            UdpConfig::on_port(PORT),
            udp,
        )
        .ok()?;
        NET.try_init_with(|| Net {
            dev,
            iface,
            sockets,
            node,
            #[cfg(feature = "dhcp")]
            dhcp,
        })
    }

    /// The Ethernet driver.
    pub fn dev(&self) -> &Eth {
        self.dev
    }

    /// Receive, echo, transmit. Returns whether anything progressed and what changed in the
    /// address setup.
    #[inline(never)]
    pub fn poll(&mut self, now: Instant) -> (bool, Option<Change>) {
        let progressed = self.node.poll(now, self.iface, self.dev, &mut self.sockets);
        (progressed, self.dhcp_event())
    }

    #[cfg(not(feature = "dhcp"))]
    fn dhcp_event(&mut self) -> Option<Change> {
        None
    }

    #[cfg(feature = "dhcp")]
    fn dhcp_event(&mut self) -> Option<Change> {
        use smoltcp::socket::dhcpv4::{Event, Socket};
        let event = self.sockets.get_mut::<Socket>(self.dhcp).poll()?;
        let change = match event {
            Event::Configured(config) => Change::Configured(config.address, config.router),
            Event::Deconfigured => Change::Deconfigured,
        };
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
            if let Change::Configured(cidr, _) = change {
                let _ = addrs.push(IpCidr::Ipv4(cidr));
            }
        });
        match change {
            Change::Configured(_, Some(router)) => {
                let _ = self.iface.routes_mut().add_default_ipv4_route(router);
            }
            _ => {
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
        Some(change)
    }

    /// When the next poll is due without network activity (`None`: only on a frame).
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.node.poll_at(now, self.iface, &self.sockets)
    }

    /// The TCP and UDP counters.
    pub fn counters(&self) -> (TcpCounters, UdpCounters) {
        (self.node.tcp_counters(), self.node.udp_counters())
    }
}

/// The static IPv6 address on QEMU's user network (its prefix is fec0::/64).
#[cfg(feature = "ipv6")]
pub const V6_ADDR: smoltcp::wire::Ipv6Cidr = smoltcp::wire::Ipv6Cidr::new(
    smoltcp::wire::Ipv6Address::new(0xfec0, 0, 0, 0, 0, 0, 0, 0x15),
    64,
);
/// QEMU's user-network IPv6 router.
#[cfg(feature = "ipv6")]
pub const V6_GATEWAY: smoltcp::wire::Ipv6Address =
    smoltcp::wire::Ipv6Address::new(0xfec0, 0, 0, 0, 0, 0, 0, 2);

/// The socket set's storage, every entry empty, built in place.
fn socket_storage() -> Option<&'static mut [SocketStorage<'static>]> {
    let slots = SOCKET_STORAGE.try_init_with(|| [const { MaybeUninit::uninit() }; SOCKETS])?;
    for slot in slots.iter_mut() {
        slot.write(SocketStorage::EMPTY);
    }
    // SAFETY: every element was initialized just above, and `MaybeUninit<T>` has the size,
    // alignment and layout of `T`, so the array may be viewed as a slice of `T`. The borrow of
    // `slots` is moved into the result, so nothing else can reach the elements.
    Some(unsafe {
        &mut *(slots.as_mut_slice() as *mut [MaybeUninit<SocketStorage<'static>>]
            as *mut [SocketStorage<'static>])
    })
}
