//! Replays every saved input (`regressions/<target>/*`: crashes found by fuzzing, and seed
//! inputs chosen because they reach deep states) through the same harness as the fuzz
//! targets, on stable Rust. Also runs a few hundred pseudo-random inputs per target.

use std::path::Path;

use smolecho::smoltcp::socket::tcp;
use smolecho_fuzz::{conn, frames, regression_inputs, sim};

fn replay<R>(target: &str, run: impl Fn(&[u8]) -> R) -> Vec<(String, R)> {
    let files = regression_inputs(target);
    assert!(
        !files.is_empty(),
        "no saved inputs in regressions/{target}/: the replay would test nothing"
    );
    files
        .iter()
        .map(|path| {
            let data = std::fs::read(path).expect("readable input");
            let name = file_name(path);
            eprintln!("{target}: replaying {name} ({} bytes)", data.len());
            (name, run(&data))
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// A tiny deterministic generator for the random smoke inputs.
fn random_inputs(count: usize, max_len: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|_| {
            let len = (next() as usize) % max_len;
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}

#[test]
fn frames_regressions_replay() {
    let reports = replay("frames", frames::run);
    for (name, report) in &reports {
        // Seeds are named after what they reach; check they still do.
        if name.starts_with("seed-established") {
            assert!(report.counters.accepted > 0, "{name}: {report:?}");
            assert!(
                report.slot_states.contains(&tcp::State::Established),
                "{name}: {report:?}"
            );
        }
        if name.starts_with("seed-closing") {
            assert!(report.counters.closed > 0, "{name}: {report:?}");
            assert!(
                report.slot_states.contains(&tcp::State::LastAck),
                "{name}: {report:?}"
            );
        }
        if name.starts_with("seed-timeouts") {
            let c = report.counters;
            assert!(
                c.timed_out > 0 && c.reset > 0 && c.held_syns > 0,
                "{name}: {report:?}"
            );
        }
    }
}

#[test]
fn sim_regressions_replay() {
    let reports = replay("sim", sim::run);
    for (name, report) in &reports {
        if name.starts_with("seed-echoed") {
            assert!(
                report
                    .tcp_outcomes
                    .iter()
                    .any(|o| o.is_some_and(|o| o.is_ok())),
                "{name}: {report:?}"
            );
            assert!(report.checked_segments > 0, "{name}: {report:?}");
        }
        if name.starts_with("seed-faults") {
            assert!(report.faults >= 3, "{name}: {report:?}");
            assert!(
                report
                    .udp_outcomes
                    .iter()
                    .any(|o| o.is_some_and(|o| o.is_ok())),
                "{name}: {report:?}"
            );
        }
        if name.starts_with("seed-udp-contention") {
            // Three 1136-byte datagrams at once: not all fit the node's UDP buffers. Every
            // datagram the service saw is echoed or counted as dropped, and some get through.
            assert_eq!(
                report.udp.datagrams_in,
                report.udp.datagrams_out + report.udp.dropped,
                "{name}: {report:?}"
            );
            assert!(
                report
                    .udp_outcomes
                    .iter()
                    .any(|o| o.is_some_and(|o| o.is_ok())),
                "{name}: {report:?}"
            );
        }
    }
}

#[test]
fn conn_regressions_replay() {
    let reports = replay("conn", conn::run);
    for (name, report) in &reports {
        if name.starts_with("seed-accepted") {
            assert!(
                report.accepted > 0 && report.echoes > 0,
                "{name}: {report:?}"
            );
        }
    }
}

#[test]
fn random_inputs_hold_every_property() {
    for data in random_inputs(300, 4096, 0x5eed_0001) {
        conn::run(&data);
    }
    for data in random_inputs(150, 4096, 0x5eed_0002) {
        frames::run(&data);
    }
    for data in random_inputs(150, 4096, 0x5eed_0003) {
        sim::run(&data);
    }
}

/// A sim run without any fault or clock jump: every client must be served, so this input
/// checks the harness itself can see success (and would see its absence).
#[test]
fn an_undisturbed_sim_run_serves_every_client() {
    // Setup: Defer, idle 1 + 9 s, handshake 1 + 3 s, ack delay; two TCP clients (300 and 5000
    // bytes, one IPv6 and half-closing) and one UDP client; no faults, no clock steps.
    let data = [
        0u8, 9, 3, 1, // refuse, idle, handshake, ack_delay
        1, 0x2c, 0x01, 0, 0, 0,
        0, // TCP 0: Some, len 300, v4, no half-close, start 0, no abort
        1, 0x88, 0x13, 1, 1, 2, 0, // TCP 1: Some, len 5000, v6, half-close, start 2, no abort
        0, 0, // TCP 2, 3: None
        1, 0x40, 0x00, 0, 1, // UDP 0: Some, len 64, v4, start 1
        0, 0, // UDP 1, 2: None
    ];
    let report = sim::run(&data);
    assert_eq!(report.tcp_outcomes.len(), 2, "{report:?}");
    assert_eq!(report.udp_outcomes.len(), 1, "{report:?}");
    assert!(
        report
            .tcp_outcomes
            .iter()
            .all(|o| o.is_some_and(|o| o.is_ok())),
        "{report:?}"
    );
    assert_eq!(report.counters.accepted, 2, "{report:?}");
    assert_eq!(report.counters.bytes_out, 5300, "{report:?}");
    assert_eq!(report.udp.datagrams_out, 1, "{report:?}");
    assert!(report.checked_segments >= 3, "{report:?}");
}
