//! The public API's contracts: construction errors instead of panics, storage in statics,
//! and the memory budget.

use core::mem::size_of;

use smolecho::smoltcp::iface::SocketStorage;
use smolecho::{
    EchoNode, Error, Sockets, TcpConfig, TcpEchoServer, TcpEchoStorage, UdpConfig, UdpEchoServer,
    UdpEchoStorage,
};
use static_cell::StaticCell;

#[test]
fn storage_lives_in_a_static_through_a_const_fn() {
    static TCP: StaticCell<TcpEchoStorage<4, 2048, 2048>> = StaticCell::new();
    static UDP: StaticCell<UdpEchoStorage<4, 1536>> = StaticCell::new();
    static SOCKETS: StaticCell<[SocketStorage<'static>; 5]> = StaticCell::new();
    let mut sockets = Sockets::new(SOCKETS.init([SocketStorage::EMPTY; 5]));
    let node = EchoNode::new(
        (TcpConfig::on_port(7), TCP.init(TcpEchoStorage::new())),
        (UdpConfig::on_port(7), UDP.init(UdpEchoStorage::new())),
        &mut sockets,
    );
    assert!(node.is_ok());
    assert_eq!(sockets.free(), 0);
}

#[test]
fn a_full_socket_set_is_an_error_not_a_panic() {
    let mut storage = [SocketStorage::EMPTY, SocketStorage::EMPTY];
    let mut sockets = Sockets::new(&mut storage[..]);
    let mut tcp = TcpEchoStorage::<3, 64, 64>::new();
    let err = TcpEchoServer::new(TcpConfig::on_port(7), &mut tcp, &mut sockets);
    assert_eq!(err.err(), Some(Error::SocketSetFull));
    assert_eq!(sockets.free(), 2, "nothing was added");
}

#[test]
fn the_node_checks_room_for_both_services_before_adding_anything() {
    let mut storage = [SocketStorage::EMPTY, SocketStorage::EMPTY];
    let mut sockets = Sockets::new(&mut storage[..]);
    let mut tcp = TcpEchoStorage::<2, 64, 64>::new();
    let mut udp = UdpEchoStorage::<1, 64>::new();
    let err = EchoNode::new(
        (TcpConfig::on_port(7), &mut tcp),
        (UdpConfig::on_port(7), &mut udp),
        &mut sockets,
    );
    assert_eq!(err.err(), Some(Error::SocketSetFull));
    assert_eq!(sockets.free(), 2);
}

#[test]
fn port_zero_and_empty_buffers_are_rejected() {
    let mut storage = [SocketStorage::EMPTY; 4];
    let mut sockets = Sockets::new(&mut storage[..]);
    let mut tcp = TcpEchoStorage::<1, 64, 64>::new();
    assert_eq!(
        TcpEchoServer::new(TcpConfig::on_port(0), &mut tcp, &mut sockets).err(),
        Some(Error::InvalidPort)
    );
    let mut empty = TcpEchoStorage::<1, 0, 64>::new();
    assert_eq!(
        TcpEchoServer::new(TcpConfig::on_port(7), &mut empty, &mut sockets).err(),
        Some(Error::BufferTooSmall)
    );
    let mut none = TcpEchoStorage::<0, 64, 64>::new();
    assert_eq!(
        TcpEchoServer::new(TcpConfig::on_port(7), &mut none, &mut sockets).err(),
        Some(Error::BufferTooSmall)
    );
    let mut udp = UdpEchoStorage::<1, 64>::new();
    assert_eq!(
        UdpEchoServer::new(UdpConfig::on_port(0), &mut udp, &mut sockets).err(),
        Some(Error::InvalidPort)
    );
    assert_eq!(sockets.free(), 4);
}

#[test]
fn memory_budget_of_four_2k_slots() {
    let storage = size_of::<TcpEchoStorage<4, 2048, 2048>>();
    let server = size_of::<TcpEchoServer<4>>();
    let per_slot = (size_of::<TcpEchoServer<8>>() - server) / 4;
    let socket = size_of::<smolecho::smoltcp::socket::tcp::Socket<'static>>();
    let socket_entry = size_of::<SocketStorage<'static>>();
    println!(
        "4 slots of 2 KiB + 2 KiB: buffers {storage} B, server state {server} B, \
         state per slot {per_slot} B, smoltcp socket entry {socket_entry} B (tcp::Socket {socket} B)"
    );
    // Buffers are exactly what was asked for; the server adds only handles, state machines,
    // counters and the SYN gate (with room for one SYN frame kept for replay).
    assert_eq!(storage, 4 * (2048 + 2048));
    assert!(per_slot <= 64, "per-slot state {per_slot} B");
    assert!(server <= 640, "server state {server} B");
}

#[test]
fn udp_metadata_and_payloads_can_live_in_separate_statics() {
    use smolecho::{UdpEchoMeta, UdpEchoPayloads};
    static TCP: StaticCell<TcpEchoStorage<1, 256, 256>> = StaticCell::new();
    static META: StaticCell<UdpEchoMeta<2>> = StaticCell::new();
    static PAYLOADS: StaticCell<UdpEchoPayloads<512>> = StaticCell::new();
    static SOCKETS: StaticCell<[SocketStorage<'static>; 2]> = StaticCell::new();
    let mut sockets = Sockets::new(SOCKETS.init([SocketStorage::EMPTY; 2]));
    let tcp = TcpEchoServer::new(
        TcpConfig::on_port(7),
        TCP.init(TcpEchoStorage::new()),
        &mut sockets,
    );
    let udp = UdpEchoServer::from_parts(
        UdpConfig::on_port(7),
        META.init(UdpEchoMeta::new()),
        PAYLOADS.init(UdpEchoPayloads::new()),
        &mut sockets,
    );
    let node = EchoNode::from_servers(tcp.expect("tcp"), udp.expect("udp"));
    assert_eq!(node.udp().config().port, 7);
    assert_eq!(sockets.free(), 0);
}
