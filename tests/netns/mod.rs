//! The namespace harness shared by the TAP suites (`tests/tap_netns.rs`,
//! `tests/tap_robustness.rs`): running a case in its own network namespace with a bounded
//! wait and a process-group kill, starting `tap_server` and reading its counters, and small
//! helpers for the inside of the namespace. [`raw`] writes raw Ethernet frames onto a TAP.
//!
//! Each suite includes it with `mod netns;`; not every suite uses every helper. `impair.rs`
//! beside it (the impaired link's relay) is not part of it: `tests/tap_impaired.rs` and
//! `benches/impair_relay.rs` include it by path.

#![allow(dead_code)]

pub mod raw;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// The test suite this copy of the harness is compiled into (`tap_netns`, ...).
const SUITE: &str = env!("CARGO_CRATE_NAME");
/// Set in the child: the name of the case to run inside the namespace.
pub const CASE_ENV: &str = "SMOLECHO_NETNS_CASE";
/// Printed by the child when the case body finished, so a filter that matched nothing
/// cannot pass for a success.
pub const DONE_MARK: &str = "netns case finished:";

pub const SERVER_V4: &str = "192.168.69.1";
pub const SERVER_V6: &str = "fdaa::1";
pub const PORT: u16 = 8000;
pub const SEED_MESSAGE: &str = "Hello, echo server!";

// ---------------------------------------------------------------------------------------------
// Running a case in its own namespace
// ---------------------------------------------------------------------------------------------

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Run `body` in a fresh network namespace (and a private mount namespace when `mount_ns`).
/// In the parent this spawns the child and checks it; in the child it runs the body.
pub fn in_netns(case: &str, limit: Duration, mount_ns: bool, body: impl FnOnce()) {
    if std::env::var(CASE_ENV).as_deref() == Ok(case) {
        sh("ip link set dev lo up");
        body();
        println!("{DONE_MARK} {case}");
        return;
    }
    if !is_root() {
        let msg = format!(
            "{SUITE}::{case} needs root (network namespaces, TAP devices): run \
             `sudo -E cargo test --release --test {SUITE} -- --ignored`"
        );
        if in_ci() {
            panic!("{msg} (CI=true: not skipping)");
        }
        // Straight to the process's stderr, past the test harness's output capture.
        let _ = writeln!(std::io::stderr(), "\n!!!!!!!! SKIPPED: {msg}\n");
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new("unshare");
    cmd.arg("--net");
    if mount_ns {
        // Private propagation: mounts made inside never reach this machine's mount table.
        cmd.args(["--mount", "--propagation", "private"]);
    }
    cmd.arg("--")
        .arg(exe)
        .args([
            case,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE_ENV, case)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so everything it starts can be killed at once.
        .process_group(0);
    let child = cmd.spawn().expect("run unshare (util-linux)");
    let (status, stdout, stderr) = wait_bounded(child, limit);
    let passed = status.is_some_and(|s| s.success());
    let ran = stdout.contains(&format!("{DONE_MARK} {case}"));
    if !passed || !ran {
        panic!(
            "case {case} {} in its namespace\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            match status {
                None => format!("overran {limit:?} and was killed"),
                Some(s) if s.success() => "did not run".to_string(),
                Some(s) => format!("failed ({s})"),
            }
        );
    }
    // Show what the case reported (figures, server lines) with --nocapture.
    print!("{stdout}");
}

/// Wait for `child` (a process-group leader) at most `limit`, then kill its whole group
/// (stragglers included). Returns its status (`None`: overran) and its output.
pub fn wait_bounded(mut child: Child, limit: Duration) -> (Option<ExitStatus>, String, String) {
    let out = reader(child.stdout.take().expect("piped"));
    let err = reader(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    kill_group(child.id());
    if status.is_none() {
        let _ = child.wait();
    }
    // A process that left the group could still hold the pipes open: do not wait for ever.
    let collect = |rx: Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| "(output still held open by a stray process)".into())
    };
    (status, collect(out), collect(err))
}

pub fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: kill(2) on a process group this test created; ESRCH (gone) is fine.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Read `r` to its end on a thread; the text arrives on the returned channel.
pub fn reader(mut r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// A background shell job (kernel-side servers) in its own process group, killed with its
/// whole group when dropped, also when the case panics.
pub struct Background(Child);

impl Background {
    pub fn start(script: &str) -> Self {
        let child = Command::new("bash")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start a background job");
        Background(child)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        kill_group(self.0.id());
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers inside the namespace
// ---------------------------------------------------------------------------------------------

/// Run a shell command (bounded by `timeout`), panic unless it succeeds; returns stdout.
pub fn sh(script: &str) -> String {
    let out = sh_output(script, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "`{script}` failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a shell command under `timeout(1)`; returns whatever happened.
pub fn sh_output(script: &str, limit: Duration) -> Output {
    Command::new("timeout")
        .args(["-s", "KILL", &format!("{}", limit.as_secs().max(1))])
        .args(["bash", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("run bash")
}

/// Where the example binaries are: `SMOLECHO_EXAMPLES` if set, else the examples of this
/// test's profile, else the release ones.
pub fn example(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("SMOLECHO_EXAMPLES") {
        return Path::new(&dir).join(name);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/tap_netns-<hash>
    let profile = exe.parent().and_then(Path::parent).expect("profile dir");
    let candidates = [
        profile.join("examples").join(name),
        profile
            .parent()
            .expect("target dir")
            .join("release/examples")
            .join(name),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{name} is not built (looked at {candidates:?}); run `cargo build --release --examples`"
            )
        })
}

/// Create the TAP `name` for the examples and give the Linux side its addresses.
pub fn make_tap(name: &str, owner: Option<&str>) {
    let user = owner.map(|u| format!(" user {u}")).unwrap_or_default();
    sh(&format!(
        "ip tuntap add dev {name} mode tap{user} && ip link set dev {name} up && \
         ip addr add 192.168.69.100/24 dev {name} && ip -6 addr add fdaa::100/64 dev {name} nodad"
    ));
}

/// Which TAP device the examples run on: the default (`tun-tap`) or `--offload` (virtio-net
/// headers and the kernel's offloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dev {
    TunTap,
    Offload,
}

impl Dev {
    /// The test's name for it (`case::tun_tap`, `case::offload`).
    pub fn name(self) -> &'static str {
        match self {
            Dev::TunTap => "tun_tap",
            Dev::Offload => "offload",
        }
    }

    /// `args` plus the option that chooses this device.
    pub fn with<'a>(self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        if self == Dev::Offload {
            all.push("--offload");
        }
        all
    }

    /// The full name of `case` run on this device, as the test harness knows it.
    pub fn case(self, case: &str) -> String {
        format!("{case}::{}", self.name())
    }
}

/// Run a case function on both devices: `on_both_devices!(case_fn, ...)` makes the tests
/// `case_fn::tun_tap` and `case_fn::offload`, each calling `case_fn(Dev::...)`.
#[macro_export]
macro_rules! on_both_devices {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::*;
            #[test]
            #[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
            fn tun_tap() {
                super::$case(Dev::TunTap)
            }
            #[test]
            #[ignore = "needs root and the example binaries; run by .ci/20-tap.sh"]
            fn offload() {
                super::$case(Dev::Offload)
            }
        }
    )*};
}

/// A running `tap_server`.
pub struct Server {
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<Receiver<String>>,
}

impl Server {
    /// Start it (wrapped by `prefix`, e.g. `setpriv ...`) and wait for its ready line.
    pub fn start_as(prefix: &[&str], args: &[&str]) -> Self {
        let bin = example("tap_server");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tap_server");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(reader(child.stderr.take().expect("piped")));
        let mut server = Server {
            child: Some(child),
            lines,
            seen: Vec::new(),
            stderr,
        };
        server.wait_line("listening on ", Duration::from_secs(10));
        server
    }

    pub fn start(args: &[&str]) -> Self {
        Self::start_as(&[], args)
    }

    /// Wait for a stdout line starting with `prefix`.
    pub fn wait_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    println!("server: {line}");
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        let err = self.kill();
        panic!(
            "tap_server printed no line starting with {prefix:?} within {limit:?}\nstdout: {:?}\nstderr: {err}",
            self.seen
        );
    }

    /// Wait for a stdout line starting with `prefix` that the server prints from now on:
    /// what it printed before is passed over (e.g. older `stats:` lines).
    pub fn wait_fresh_line(&mut self, prefix: &str, limit: Duration) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.wait_line(prefix, limit)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM it; it must print its final counters and exit 0. Returns the counters.
    pub fn stop(mut self) -> Counters {
        // Let the last FIN exchanges finish before reading the counters.
        thread::sleep(Duration::from_millis(300));
        let pid = libc::pid_t::try_from(self.pid()).expect("pid");
        // SAFETY: kill(2) on the server process this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let line = self.wait_line("final: ", Duration::from_secs(10));
        let mut child = self.child.take().expect("running");
        let status = wait_child(&mut child, Duration::from_secs(10));
        let stderr = self
            .stderr
            .take()
            .map(|rx| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default());
        assert!(
            status.is_some_and(|s| s.success()),
            "tap_server did not exit 0 on SIGTERM: {status:?}\nstderr: {stderr:?}"
        );
        Counters::parse(&line)
    }

    pub fn kill(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stderr
            .take()
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(5)).ok())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait at most `limit` for `child`; kill it when it overruns (`None`).
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The server's `final:` (or `stats:`) line as `section.name -> value`.
pub struct Counters(HashMap<String, u64>);

impl Counters {
    pub fn parse(line: &str) -> Self {
        let body = line.split_once(": ").map_or(line, |(_, b)| b);
        let mut map = HashMap::new();
        for section in body.split(" | ") {
            let mut words = section.split_whitespace();
            let name = words.next().unwrap_or("");
            for pair in words {
                if let Some((k, v)) = pair.split_once('=') {
                    map.insert(format!("{name}.{k}"), v.parse().unwrap_or(u64::MAX));
                }
            }
        }
        Counters(map)
    }

    pub fn get(&self, key: &str) -> u64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no counter {key} in {:?}", self.0))
    }
}

pub fn endpoint(ip: &str, port: u16) -> SocketAddr {
    format!(
        "{}:{port}",
        if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        }
    )
    .parse()
    .expect("socket address")
}

/// The seed's echo-client.py: connect, send the message, read the echo, close.
pub fn seed_tcp_client(ip: &str, message: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&endpoint(ip, PORT), Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(message)?;
    let mut echo = vec![0; message.len()];
    s.read_exact(&mut echo)?;
    Ok(echo)
}

/// The seed's udpc.py: send one datagram, read the reply (with a few retries).
pub fn seed_udp_client(ip: &str, message: &[u8]) -> Vec<u8> {
    let bind = if ip.contains(':') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let sock = UdpSocket::bind(bind).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let server = endpoint(ip, PORT);
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        sock.send_to(message, server).expect("send");
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            assert_eq!(from, server, "reply from the wrong address");
            return buf[..n].to_vec();
        }
    }
    panic!("no UDP echo from {server} after 5 tries");
}

/// A deterministic, non-repeating byte stream (xorshift).
pub struct Pattern(pub u64);

impl Pattern {
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// CPU time (user + system, in clock ticks) the process has used.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (0-based 11, 12).
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}
