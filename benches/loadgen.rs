//! The load generator of the benchmark suite (`benches/run.sh`): one compiled client for every
//! measurement, so the client is never the bottleneck and both servers meet the same client.
//!
//! ```text
//! loadgen bulk    HOST:PORT BYTES [TIMEOUT_SECS]  one connection, byte-verified echo throughput
//!                                                 and the longest stall
//! loadgen tcp-rtt HOST:PORT COUNT [SIZE]          round trips of SIZE (64) bytes on one connection
//! loadgen udp-rtt HOST:PORT COUNT [SIZE]          round trips of SIZE (64) byte datagrams
//! loadgen churn   HOST:PORT SECS WORKERS [SRC...] connect, echo 32 B, close, for SECS seconds
//! loadgen many    HOST:PORT CLIENTS TIMEOUT_SECS  CLIENTS connections at once, 32 B each
//! loadgen clients HOST:PORT CLIENTS BYTES HOLD_MS TIMEOUT_SECS
//!                                                 CLIENTS at once, BYTES each, verified, each
//!                                                 connection held HOLD_MS after its echo; counts
//!                                                 served, reset, refused and failed clients
//! ```
//!
//! Each prints one line of `key=value` pairs on stdout and exits 0, or explains the failure on
//! stderr and exits 1 (a byte mismatch, a lost connection, not every client served, ...).
//! `bulk`, `many` and `clients` still print their line on stdout when they fail, so a failed
//! measurement keeps its figures (`bulk_failed=WHY`, the longest stall, the counts).
//! The longest stall of `bulk` is the longest time between two reads that returned bytes
//! (from the connection's establishment on, and up to the failure if it fails): the figure
//! of issue 9 (a peer that stops acknowledging under reordering stalls for seconds).
//! `churn` spreads its connections over the source addresses `SRC...` (each must be assigned
//! to a local interface) so the client's TIME_WAIT entries never exhaust the ports of one.
//!
//! Built as a `harness = false` bench target: `cargo bench --bench loadgen --no-run`. Run
//! without arguments (as `cargo bench` or `cargo test --benches` do) it prints its usage and
//! exits 0.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: loadgen bulk    HOST:PORT BYTES [TIMEOUT_SECS]
       loadgen tcp-rtt HOST:PORT COUNT [SIZE]
       loadgen udp-rtt HOST:PORT COUNT [SIZE]
       loadgen churn   HOST:PORT SECS WORKERS [SRC_ADDR...]
       loadgen many    HOST:PORT CLIENTS TIMEOUT_SECS
       loadgen clients HOST:PORT CLIENTS BYTES HOLD_MS TIMEOUT_SECS
";

/// Length of the bulk test pattern: a prime, so chunk boundaries never line up with it.
const PATTERN: usize = 65521;
/// How long any single read may wait before the measurement counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Round trips before the timed ones (connection warm-up, caches, ARP).
const WARMUP: usize = 200;

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful.
    if args.is_empty() || args.iter().all(|a| a.starts_with("--")) {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen {}: {e}", args[0]);
            ExitCode::FAILURE
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Res<T> {
    let v = args
        .get(i)
        .ok_or_else(|| format!("missing {what}\n{USAGE}"))?;
    v.parse().map_err(|_| format!("bad {what}: {v:?}"))
}

fn opt<T: std::str::FromStr>(args: &[String], i: usize, what: &str, default: T) -> Res<T> {
    match args.get(i) {
        None => Ok(default),
        Some(_) => arg(args, i, what),
    }
}

fn run(args: &[String]) -> Res<String> {
    let addr: SocketAddr = arg(args, 1, "HOST:PORT")?;
    match args[0].as_str() {
        "bulk" => bulk(
            addr,
            arg(args, 2, "BYTES")?,
            args.get(3)
                .map(|_| arg(args, 3, "TIMEOUT_SECS"))
                .transpose()?,
        ),
        "tcp-rtt" => tcp_rtt(addr, arg(args, 2, "COUNT")?, opt(args, 3, "SIZE", 64)?),
        "udp-rtt" => udp_rtt(addr, arg(args, 2, "COUNT")?, opt(args, 3, "SIZE", 64)?),
        "churn" => {
            let sources = args
                .get(4..)
                .unwrap_or(&[])
                .iter()
                .map(|s| s.parse().map_err(|_| format!("bad source address {s:?}")))
                .collect::<Res<Vec<IpAddr>>>()?;
            churn(
                addr,
                arg(args, 2, "SECS")?,
                arg(args, 3, "WORKERS")?,
                sources,
            )
        }
        "many" => many(
            addr,
            arg(args, 2, "CLIENTS")?,
            arg(args, 3, "TIMEOUT_SECS")?,
        ),
        "clients" => clients(
            addr,
            arg(args, 2, "CLIENTS")?,
            arg(args, 3, "BYTES")?,
            Duration::from_millis(arg(args, 4, "HOLD_MS")?),
            arg(args, 5, "TIMEOUT_SECS")?,
        ),
        other => Err(format!("unknown measurement {other:?}\n{USAGE}")),
    }
}

fn connect(addr: SocketAddr) -> Res<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// A deterministic pseudo-random pattern (xorshift), repeated over the whole transfer.
fn pattern() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..PATTERN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect()
}

/// One connection; a writer thread sends `bytes` of the pattern and half-closes, this thread
/// reads the echo back and checks every byte, then waits for the server's FIN. With a
/// `timeout` (seconds) the whole transfer must finish within it; without, each read may wait
/// `IO_TIMEOUT`.
fn bulk(addr: SocketAddr, bytes: u64, timeout: Option<f64>) -> Res<String> {
    let pat = Arc::new(pattern());
    let start = Instant::now();
    let deadline = timeout.map(|t| start + Duration::from_secs_f64(t));
    let stream = connect(addr)?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let wpat = Arc::clone(&pat);
    let sender = thread::spawn(move || -> io::Result<()> {
        let mut sent = 0u64;
        while sent < bytes {
            let off = (sent % PATTERN as u64) as usize;
            let n = (PATTERN - off).min((bytes - sent) as usize);
            writer.write_all(&wpat[off..off + n])?;
            sent += n as u64;
        }
        writer.shutdown(Shutdown::Write)
    });
    let mut reader = stream;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let mut last_bytes = Instant::now();
    let mut stall = Duration::ZERO;
    // What a failure prints on stdout (the figures so far) and stderr (why).
    let failed = |why: &str, got: u64, stall: Duration, detail: String| -> Res<String> {
        println!(
            "bulk_failed={why} bytes={bytes} got={got} secs={:.3} longest_stall_ms={:.0}",
            start.elapsed().as_secs_f64(),
            stall.as_secs_f64() * 1e3
        );
        Err(detail)
    };
    // The read timeout for the next read: what is left of the transfer's time, or IO_TIMEOUT.
    let next_wait = || -> Option<Duration> {
        match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then_some(left)
            }
            None => Some(IO_TIMEOUT),
        }
    };
    while got < bytes {
        let Some(wait) = next_wait() else {
            stall = stall.max(last_bytes.elapsed());
            return failed(
                "timeout",
                got,
                stall,
                format!("timeout after {got} of {bytes} bytes"),
            );
        };
        reader
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let want = buf.len().min((bytes - got) as usize);
        let n = match reader.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) => {
                stall = stall.max(last_bytes.elapsed());
                let why = failure_kind(&e);
                return failed(
                    why,
                    got,
                    stall,
                    format!("after {got} of {bytes} bytes: {e}"),
                );
            }
        };
        if n == 0 {
            return failed(
                "eof",
                got,
                stall,
                format!("EOF after {got} of {bytes} bytes"),
            );
        }
        stall = stall.max(last_bytes.elapsed());
        last_bytes = Instant::now();
        let mut done = 0;
        while done < n {
            let off = ((got + done as u64) % PATTERN as u64) as usize;
            let len = (PATTERN - off).min(n - done);
            if buf[done..done + len] != pat[off..off + len] {
                let at = got + done as u64;
                return failed(
                    "mismatch",
                    got,
                    stall,
                    format!("byte mismatch near offset {at}"),
                );
            }
            done += len;
        }
        got += n as u64;
    }
    let elapsed = start.elapsed();
    // The echo closes after our FIN: nothing more may arrive.
    let wait = next_wait().unwrap_or(Duration::from_millis(1));
    reader
        .set_read_timeout(Some(wait))
        .map_err(|e| e.to_string())?;
    match reader.read(&mut buf[..1]) {
        Ok(0) => {}
        Ok(_) => return failed("extra", got, stall, "bytes beyond what was sent".into()),
        Err(e) => {
            let why = failure_kind(&e);
            return failed(
                why,
                got,
                stall,
                format!("waiting for the server's FIN: {e}"),
            );
        }
    }
    sender
        .join()
        .map_err(|_| "writer panicked".to_string())?
        .map_err(|e| format!("writing: {e}"))?;
    let mbit = bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e6;
    Ok(format!(
        "bulk_mbit={mbit:.1} bytes={bytes} secs={:.3} longest_stall_ms={:.0} verified=1",
        elapsed.as_secs_f64(),
        stall.as_secs_f64() * 1e3
    ))
}

/// One word for why a socket call failed: `reset` (the peer sent an RST), `refused`,
/// `timeout` or `error`.
fn failure_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => "reset",
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timeout",
        _ => "error",
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(prefix: &str, mut rtts: Vec<f64>) -> String {
    rtts.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{prefix}_p50_us={:.1} {prefix}_p99_us={:.1} samples={}",
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.99),
        rtts.len()
    )
}

fn tcp_rtt(addr: SocketAddr, count: usize, size: usize) -> Res<String> {
    let mut s = connect(addr)?;
    let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut back = vec![0u8; size];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..WARMUP + count {
        let t = Instant::now();
        s.write_all(&msg).map_err(|e| format!("write: {e}"))?;
        s.read_exact(&mut back)
            .map_err(|e| format!("round trip {i}: {e}"))?;
        let rtt = t.elapsed();
        if back != msg {
            return Err(format!("round trip {i}: echo differs"));
        }
        if i >= WARMUP {
            rtts.push(rtt.as_secs_f64() * 1e6);
        }
    }
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let _ = s.read(&mut back);
    Ok(summary("tcp_rtt", rtts))
}

fn udp_rtt(addr: SocketAddr, count: usize, size: usize) -> Res<String> {
    let size = size.max(8);
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| "local address".to_string())?;
    let s = UdpSocket::bind(local).map_err(|e| e.to_string())?;
    s.connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut msg = vec![0x55u8; size];
    let mut back = vec![0u8; size + 1];
    let mut rtts = Vec::with_capacity(count);
    let mut lost = 0usize;
    for seq in 0..(WARMUP + count) as u64 {
        msg[..8].copy_from_slice(&seq.to_be_bytes());
        let t = Instant::now();
        s.send(&msg).map_err(|e| format!("send: {e}"))?;
        loop {
            match s.recv(&mut back) {
                Ok(n) if n == size && back[..n] == msg[..] => {
                    if seq >= WARMUP as u64 {
                        rtts.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    break;
                }
                // A late echo of an earlier, timed-out datagram.
                Ok(n) if n == size && back[8..n] == msg[8..] => continue,
                Ok(n) => return Err(format!("datagram {seq}: wrong echo ({n} bytes)")),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    lost += 1;
                    break;
                }
                Err(e) => return Err(format!("recv: {e}")),
            }
        }
    }
    if lost * 100 > count {
        return Err(format!("{lost} of {count} datagrams lost"));
    }
    Ok(format!("{} lost={lost}", summary("udp_rtt", rtts)))
}

/// A TCP connection from `src` (port chosen at connect time, so TIME_WAIT entries only block
/// their own 4-tuple) to `dst`, with a bounded SYN retry count.
fn connect_from(src: Option<IpAddr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let Some(src) = src else {
        // The kernel's own SYN retries bound this (about two minutes).
        return TcpStream::connect(dst);
    };
    let (family, sa, len) = sockaddr(SocketAddr::new(src, 0));
    let (_, da, dlen) = sockaddr(dst);
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr buffers are
    // valid for the lengths given. On error the descriptor is closed before returning.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        let syncnt: libc::c_int = 4;
        let ok = libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
            && libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_SYNCNT,
                (&syncnt as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
            && libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len) == 0
            && libc::connect(fd, (&da as *const libc::sockaddr_storage).cast(), dlen) == 0;
        if !ok {
            let err = io::Error::last_os_error();
            libc::close(fd);
            return Err(err);
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::c_int, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is suitably aligned.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            (libc::AF_INET, ss, len)
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is suitably aligned.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            (libc::AF_INET6, ss, len)
        }
    }
}

/// One short echo session: connect, 32 bytes there and back, half-close, wait for the
/// server's FIN. Returns an error for anything else.
fn session(src: Option<IpAddr>, dst: SocketAddr, tag: u64) -> Res<()> {
    let mut s = connect_from(src, dst).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut msg = [0u8; 32];
    msg[..8].copy_from_slice(&tag.to_be_bytes());
    msg[8..].fill(0xa5);
    s.write_all(&msg).map_err(|e| format!("write: {e}"))?;
    let mut back = [0u8; 32];
    s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
    if back != msg {
        return Err("echo differs".into());
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    match s.read(&mut back) {
        Ok(0) => Ok(()),
        Ok(_) => Err("bytes after the echo".into()),
        Err(e) => Err(format!("waiting for FIN: {e}")),
    }
}

fn churn(addr: SocketAddr, secs: f64, workers: usize, sources: Vec<IpAddr>) -> Res<String> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sources = Arc::new(sources);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..workers.max(1))
        .map(|w| {
            let (done, stop, sources) = (done.clone(), stop.clone(), sources.clone());
            thread::spawn(move || -> Res<()> {
                let mut i = w;
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let src = (!sources.is_empty()).then(|| sources[i % sources.len()]);
                    if let Err(e) = session(src, addr, i as u64) {
                        stop.store(true, Ordering::Relaxed);
                        return Err(format!("connection {}: {e}", done.load(Ordering::Relaxed)));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += workers;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "worker panicked".to_string())??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    Ok(format!(
        "churn_per_s={:.0} connections={n} secs={elapsed:.3} workers={workers}",
        n as f64 / elapsed
    ))
}

fn many(addr: SocketAddr, clients: usize, timeout: f64) -> Res<String> {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let (tx, rx) = mpsc::channel();
    for i in 0..clients {
        let (barrier, tx) = (barrier.clone(), tx.clone());
        thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                barrier.wait();
                let r = session(None, addr, i as u64);
                let _ = tx.send((i, r));
            })
            .map_err(|e| format!("spawning client {i}: {e}"))?;
    }
    drop(tx);
    barrier.wait();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(timeout);
    let (mut served, mut failed) = (0usize, Vec::new());
    let mut last = Duration::ZERO;
    while served + failed.len() < clients {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, Ok(()))) => {
                served += 1;
                last = start.elapsed();
            }
            Ok((i, Err(e))) => failed.push(format!("client {i}: {e}")),
            Err(_) => break,
        }
    }
    let line = format!(
        "many_served={served} many_clients={clients} many_secs={:.3}",
        last.as_secs_f64()
    );
    if served < clients {
        // The counts still go to stdout, for the table.
        println!("{line}");
        let pending = clients - served - failed.len();
        failed.truncate(3);
        return Err(format!(
            "{line}: {pending} still waiting after {timeout} s; failures: {failed:?}"
        ));
    }
    Ok(line)
}

/// How one client of `clients` ended.
enum Outcome {
    Served,
    /// An RST reached it (connection reset, or a write after one).
    Reset(String),
    Refused(String),
    /// Anything else: a timeout, a wrong echo, an early EOF.
    Failed(String),
}

/// One client of `clients`: connect, send `bytes` of its own pattern, read the echo back and
/// check it, keep the connection `hold`, half-close, wait for the server's FIN; all before
/// `deadline`.
fn echo_client(
    addr: SocketAddr,
    id: usize,
    bytes: usize,
    hold: Duration,
    deadline: Instant,
) -> Outcome {
    let left = || deadline.saturating_duration_since(Instant::now());
    let io_err = |what: &str, e: io::Error| -> Outcome {
        let msg = format!("client {id}: {what}: {e}");
        match failure_kind(&e) {
            "reset" => Outcome::Reset(msg),
            "refused" => Outcome::Refused(msg),
            _ => Outcome::Failed(msg),
        }
    };
    if left().is_zero() {
        return Outcome::Failed(format!("client {id}: no time left to connect"));
    }
    // The kernel's own SYN retransmissions are what a client held back by a busy server
    // relies on; connect_timeout bounds them by the deadline.
    let mut s = match TcpStream::connect_timeout(&addr, left()) {
        Ok(s) => s,
        Err(e) => return io_err("connect", e),
    };
    let _ = s.set_nodelay(true);
    let mut msg = vec![0u8; bytes];
    let mut x = (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in msg.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 56) as u8;
    }
    let mut back = vec![0u8; bytes];
    let io = (|| -> Result<(), (&str, io::Error)> {
        let timeout = |s: &TcpStream| {
            s.set_read_timeout(Some(left().max(Duration::from_millis(1))))
                .and_then(|()| s.set_write_timeout(Some(left().max(Duration::from_millis(1)))))
        };
        timeout(&s).map_err(|e| ("setup", e))?;
        s.write_all(&msg).map_err(|e| ("write", e))?;
        timeout(&s).map_err(|e| ("setup", e))?;
        s.read_exact(&mut back).map_err(|e| ("read", e))?;
        Ok(())
    })();
    if let Err((what, e)) = io {
        return io_err(what, e);
    }
    if back != msg {
        return Outcome::Failed(format!("client {id}: echo differs"));
    }
    thread::sleep(hold.min(left()));
    if let Err(e) = s.shutdown(Shutdown::Write) {
        return io_err("shutdown", e);
    }
    let _ = s.set_read_timeout(Some(left().max(Duration::from_millis(1))));
    match s.read(&mut back[..1]) {
        Ok(0) => Outcome::Served,
        Ok(_) => Outcome::Failed(format!("client {id}: bytes after the echo")),
        Err(e) => io_err("waiting for FIN", e),
    }
}

/// `clients` connections at once (every one in its own thread), `bytes` echoed on each.
fn clients(
    addr: SocketAddr,
    clients: usize,
    bytes: usize,
    hold: Duration,
    timeout: f64,
) -> Res<String> {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let (tx, rx) = mpsc::channel();
    // Spawning takes milliseconds: the clock starts before it, so no client gets extra time.
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(timeout);
    for i in 0..clients {
        let (barrier, tx) = (barrier.clone(), tx.clone());
        thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                barrier.wait();
                let _ = tx.send(echo_client(addr, i, bytes, hold, deadline));
            })
            .map_err(|e| format!("spawning client {i}: {e}"))?;
    }
    drop(tx);
    barrier.wait();
    let (mut served, mut reset, mut refused, mut failed) = (0usize, 0usize, 0usize, 0usize);
    let mut notes = Vec::new();
    let mut last = Duration::ZERO;
    // A little past the deadline: every client gives up by then on its own.
    let grace = deadline + Duration::from_secs(2);
    while served + reset + refused + failed < clients {
        match rx.recv_timeout(grace.saturating_duration_since(Instant::now())) {
            Ok(Outcome::Served) => {
                served += 1;
                last = start.elapsed();
            }
            Ok(Outcome::Reset(m)) => {
                reset += 1;
                notes.push(m);
            }
            Ok(Outcome::Refused(m)) => {
                refused += 1;
                notes.push(m);
            }
            Ok(Outcome::Failed(m)) => {
                failed += 1;
                notes.push(m);
            }
            Err(_) => break,
        }
    }
    let pending = clients - served - reset - refused - failed;
    let line = format!(
        "clients_served={served} clients_reset={reset} clients_refused={refused} \
         clients_failed={} clients={clients} clients_bytes={bytes} clients_hold_ms={} \
         clients_secs={:.3}",
        failed + pending,
        hold.as_millis(),
        last.as_secs_f64()
    );
    if served < clients {
        println!("{line}");
        notes.truncate(5);
        return Err(format!(
            "{line}: {pending} still running at the deadline; {notes:?}"
        ));
    }
    Ok(line)
}
