//! The `sim` fuzz target found echoes cut short (`known-upstream/sim/crash-fin-past-window-*`):
//! the node closed its side after 15779 of 15871 bytes. The cause is in smoltcp 0.14
//! (`socket/tcp.rs`, `process`): a segment that carries data and FIN and reaches past the
//! receive window has its payload trimmed to the window, but its FIN is still accepted, so
//! the stream "ends" at the window edge and the bytes beyond it are lost. RFC 9293 (3.10.7.4)
//! keeps only the part inside the window; a FIN outside it is not processed.
//!
//! This test forges exactly that segment against a live echo connection and checks the slot
//! does not take the FIN. It fails on smoltcp 0.14 and is ignored so the suite stays green
//! until smolecho works around it (or smoltcp is fixed): run it with
//! `cargo test --release --test fin_past_window -- --ignored`.

use smolecho::sim::frames::{self, Peer};
use smolecho::smoltcp::iface::SocketStorage;
use smolecho::smoltcp::socket::tcp;
use smolecho::smoltcp::time::{Duration, Instant};
use smolecho::smoltcp::wire::{IpAddress, IpEndpoint, TcpControl, TcpRepr, TcpSeqNumber};
use smolecho::{Sockets, TcpConfig};
use smolecho_fuzz::net::{self, PORT, SERVER_V4, Server};

#[test]
#[ignore = "smoltcp 0.14 accepts the FIN of a segment trimmed to the receive window"]
fn a_fin_beyond_the_receive_window_is_not_taken() {
    let mut now = Instant::from_secs(1);
    let mut wire = net::Wire::new();
    let mut store = net::ServerStore::boxed();
    let mut mem = net::socket_mem(8);
    let config = TcpConfig {
        ack_delay: None,
        ..TcpConfig::on_port(PORT)
    };
    let mut server = Server::new(&mut store, &mut mem, config, &mut wire.srv_link, now);

    // A client that sends 5000 bytes and reads nothing, through a 1 KiB receive buffer, so
    // the node's buffers fill and its window shrinks.
    let mut rx = vec![0u8; 1024];
    let mut tx = vec![0u8; 8192];
    let mut cmem = [SocketStorage::EMPTY; 1];
    let mut csockets = Sockets::new(&mut cmem);
    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(&mut rx[..]),
        tcp::SocketBuffer::new(&mut tx[..]),
    );
    let handle = csockets.add(socket).expect("room");
    let mut client_iface = net::client_iface(&mut wire.cli_link, now);
    let remote = IpEndpoint::new(IpAddress::Ipv4(SERVER_V4), PORT);
    csockets
        .get_mut::<tcp::Socket>(handle)
        .connect(client_iface.context(), remote, 40000)
        .expect("connect");

    let mut sent = 0usize;
    // From the node's last segment: (its next sequence number, its ACK, its window).
    let mut last = (0u32, 0u32, 0u16);
    for _ in 0..2000 {
        wire.deliver();
        server.poll(now, &mut wire.srv_link);
        wire.collect_from_server(now, |f| {
            if let Some(s) = net::parse_tcp(f)
                && s.src_port == PORT
            {
                last = (
                    s.seq.wrapping_add(s.seq_len()),
                    s.ack.unwrap_or(0),
                    s.window,
                );
            }
        });
        net::poll_client(&mut client_iface, &mut wire.cli_link, &mut csockets, now);
        let socket = csockets.get_mut::<tcp::Socket>(handle);
        if socket.may_send() && sent < 5000 {
            let data = net::pattern(5000 - sent, sent as u32);
            sent += socket.send_slice(&data).unwrap_or(0);
        }
        wire.collect_from_client(now, |_| {});
        now += Duration::from_millis(5);
    }
    let (srv_nxt, srv_ack, window) = last;
    assert!(
        window > 0 && window < 1000,
        "the node's window should be small but open: {window}"
    );
    let states = server.slot_states();
    assert!(states.contains(&tcp::State::Established), "{states:?}");

    // Data and FIN starting at the node's ACK, 92 bytes longer than its window.
    let payload = vec![0x5a; usize::from(window) + 92];
    let segment = TcpRepr {
        src_port: 40000,
        dst_port: PORT,
        control: TcpControl::Fin,
        seq_number: TcpSeqNumber(srv_ack as i32),
        ack_number: Some(TcpSeqNumber(srv_nxt as i32)),
        window_len: 1024,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &payload,
    };
    let frame = frames::tcp_repr(&Peer::client_v4(40000), &Peer::server_v4(PORT), &segment);
    assert!(!frame.is_empty(), "the forged segment fits a frame");
    wire.to_srv.clear();
    wire.to_srv.push_back(frame.to_vec());
    wire.deliver();
    server.poll(now, &mut wire.srv_link);
    let mut acked = None;
    wire.collect_from_server(now, |f| {
        if let Some(s) = net::parse_tcp(f) {
            acked = s.ack;
        }
    });

    let states = server.slot_states();
    let fin_taken = states
        .iter()
        .any(|s| matches!(s, tcp::State::CloseWait | tcp::State::LastAck));
    assert!(
        !fin_taken,
        "the node took a FIN that lies {} bytes past its window (it ACKed {:?}, window \
         started at {srv_ack}, {window} bytes): slots {states:?}",
        92, acked
    );
}

/// The fuzzer's own inputs for the same smoltcp bug, replayed through the `sim` harness.
#[test]
#[ignore = "smoltcp 0.14 accepts the FIN of a segment trimmed to the receive window"]
fn known_upstream_sim_inputs_replay() {
    let inputs = smolecho_fuzz::known_upstream_inputs("sim");
    assert!(!inputs.is_empty(), "no inputs in known-upstream/sim/");
    for path in inputs {
        let data = std::fs::read(&path).expect("readable input");
        eprintln!("sim: replaying {}", path.display());
        smolecho_fuzz::sim::run(&data);
    }
}
