//! The public API's contracts: construction errors instead of panics, storage in statics or
//! sized at run time, and the memory budget.

use core::mem::size_of;

use smolecho::smoltcp::iface::SocketStorage;
use smolecho::smoltcp::socket::udp::PacketMetadata;
use smolecho::{
    EchoNode, Error, HeldSyn, Sockets, TcpBuffers, TcpConfig, TcpSlot, TcpStorage, UdpBuffers,
    UdpConfig, UdpStorage,
};
use static_cell::{ConstStaticCell, StaticCell};

#[test]
fn storage_lives_in_a_static_through_a_const_fn() {
    static TCP: ConstStaticCell<TcpStorage<4, 2048, 2048, 8>> =
        ConstStaticCell::new(TcpStorage::new());
    static UDP: ConstStaticCell<UdpStorage<4, 1536>> = ConstStaticCell::new(UdpStorage::new());
    static SOCKETS: StaticCell<[SocketStorage<'static>; 5]> = StaticCell::new();
    let mut sockets = Sockets::new(SOCKETS.init([SocketStorage::EMPTY; 5]));
    let node = EchoNode::new(
        &mut sockets,
        TcpConfig::on_port(7),
        TCP.take().buffers(),
        UdpConfig::on_port(7),
        UDP.take().buffers(),
    );
    assert!(node.is_ok());
    assert_eq!(sockets.free(), 0);
}

#[test]
fn a_pool_sized_at_run_time_gets_a_socket_per_slot() {
    for n in [1usize, 3, 100] {
        let mut entries: Vec<_> = (0..=n).map(|_| SocketStorage::EMPTY).collect();
        let mut sockets = Sockets::new(&mut entries[..]);
        let mut slots = vec![TcpSlot::EMPTY; n];
        let mut backlog = vec![HeldSyn::EMPTY; 4];
        let (mut rx, mut tx) = (vec![0u8; n * 512], vec![0u8; n * 512]);
        let mut meta = [PacketMetadata::EMPTY; 2];
        let mut payload = [0u8; 3 * 64];
        let node = EchoNode::new(
            &mut sockets,
            TcpConfig::on_port(7),
            TcpBuffers::new(&mut slots[..], &mut rx[..], &mut tx[..])
                .with_backlog(&mut backlog[..]),
            UdpConfig::on_port(7),
            UdpBuffers::new(&mut meta[..], &mut payload[..]),
        )
        .expect("node");
        assert_eq!(node.tcp_handles().count(), n);
        assert_eq!(node.active_connections(), 0);
        assert_eq!(sockets.free(), 0);
    }
}

/// Build a node on a fresh socket set of four entries; returns the error, and how many
/// entries are still free afterwards.
fn attempt(
    tcp: (u16, TcpBuffers<'static>),
    udp: (u16, UdpBuffers<'static>),
) -> (Option<Error>, usize) {
    let entries: &'static mut [SocketStorage<'static>] =
        Vec::leak((0..4).map(|_| SocketStorage::EMPTY).collect());
    let mut sockets = Sockets::new(entries);
    let err = EchoNode::new(
        &mut sockets,
        TcpConfig::on_port(tcp.0),
        tcp.1,
        UdpConfig::on_port(udp.0),
        udp.1,
    )
    .err();
    (err, sockets.free())
}

fn tcp_buffers(slots: usize, bytes: usize) -> TcpBuffers<'static> {
    TcpBuffers::new(
        Vec::leak(vec![TcpSlot::EMPTY; slots]),
        Vec::leak(vec![0u8; bytes]),
        Vec::leak(vec![0u8; bytes]),
    )
}

fn udp_buffers(meta: usize, bytes: usize) -> UdpBuffers<'static> {
    UdpBuffers::new(
        Vec::leak(vec![PacketMetadata::EMPTY; meta]),
        Vec::leak(vec![0u8; bytes]),
    )
}

#[test]
fn port_zero_no_slots_and_small_buffers_are_errors_not_panics() {
    let cases = [
        (
            "tcp port 0",
            (0, tcp_buffers(1, 64)),
            (7, udp_buffers(2, 192)),
            Error::InvalidPort,
        ),
        (
            "udp port 0",
            (7, tcp_buffers(1, 64)),
            (0, udp_buffers(2, 192)),
            Error::InvalidPort,
        ),
        (
            "no slots",
            (7, tcp_buffers(0, 64)),
            (7, udp_buffers(2, 192)),
            Error::NoSlots,
        ),
        (
            "two slots cannot share one byte",
            (7, tcp_buffers(2, 1)),
            (7, udp_buffers(2, 192)),
            Error::BufferTooSmall,
        ),
        (
            "one metadata entry cannot serve both directions",
            (7, tcp_buffers(1, 64)),
            (7, udp_buffers(1, 192)),
            Error::BufferTooSmall,
        ),
        (
            "no payload bytes",
            (7, tcp_buffers(1, 64)),
            (7, udp_buffers(2, 0)),
            Error::BufferTooSmall,
        ),
        (
            "four slots and UDP need five entries",
            (7, tcp_buffers(4, 256)),
            (7, udp_buffers(2, 192)),
            Error::SocketSetFull,
        ),
    ];
    for (what, tcp, udp, expected) in cases {
        assert_eq!(
            attempt(tcp, udp),
            (Some(expected), 4),
            "{what}: nothing added"
        );
    }
    assert_eq!(
        attempt((7, tcp_buffers(3, 192)), (7, udp_buffers(2, 192))),
        (None, 0)
    );
}

#[test]
fn memory_budget_of_four_2k_slots() {
    let storage = size_of::<TcpStorage<4, 2048, 2048>>();
    let slot = size_of::<TcpSlot>();
    let held = size_of::<HeldSyn>();
    let node = size_of::<EchoNode<'static>>();
    let socket = size_of::<smolecho::smoltcp::socket::tcp::Socket<'static>>();
    let socket_entry = size_of::<SocketStorage<'static>>();
    println!(
        "4 slots of 2 KiB + 2 KiB: storage {storage} B (of which {slot} B per slot table \
         entry), node {node} B, backlog entry {held} B, smoltcp socket entry \
         {socket_entry} B (tcp::Socket {socket} B)"
    );
    // The storage is the buffers plus the slot table; the node itself holds only its
    // counters, the policy's state and slices.
    assert_eq!(storage, 4 * (2048 + 2048 + slot));
    assert!(slot <= 176, "slot table entry {slot} B");
    assert!(held <= 192, "backlog entry {held} B");
    assert!(node <= 640, "node {node} B");
}

#[test]
fn udp_metadata_and_payloads_can_live_in_separate_statics() {
    static TCP: ConstStaticCell<TcpStorage<1, 256, 256>> = ConstStaticCell::new(TcpStorage::new());
    static META: ConstStaticCell<[PacketMetadata; 4]> =
        ConstStaticCell::new([PacketMetadata::EMPTY; 4]);
    static PAYLOADS: ConstStaticCell<[u8; 3 * 512]> = ConstStaticCell::new([0; 3 * 512]);
    static SOCKETS: StaticCell<[SocketStorage<'static>; 2]> = StaticCell::new();
    let mut sockets = Sockets::new(SOCKETS.init([SocketStorage::EMPTY; 2]));
    let node = EchoNode::new(
        &mut sockets,
        TcpConfig::on_port(7),
        TCP.take().buffers(),
        UdpConfig::on_port(7),
        UdpBuffers::new(META.take(), PAYLOADS.take()),
    )
    .expect("node");
    assert_eq!(node.udp_config().port, 7);
    assert_eq!(sockets.free(), 0);
}
