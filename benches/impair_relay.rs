//! The impairing relay of the impaired-link benchmark (`benches/impaired.sh`, issue 9): bridges
//! two interfaces of the namespace it runs in and loses, duplicates, corrupts and delays frames
//! in both directions, seeded. The relay itself is `tests/netns/impair.rs` (the TAP test
//! `tests/tap_impaired.rs` runs the same code in-process).
//!
//! ```text
//! impair_relay IF_A IF_B [--profile clean|reorder|loss2|mix] [--seed N] [--loss PCT]
//!              [--dup PCT] [--corrupt PCT] [--delay MIN_MS-MAX_MS] [--max-secs N]
//! ```
//!
//! Options after `--profile` override its values; all apply to both directions. It prints a
//! line with `ready` once both sockets are bound, runs until SIGTERM or SIGINT (or
//! `--max-secs`, default 3600), then prints one counter line per direction and exits 0.
//!
//! Built as a `harness = false` bench target: `cargo bench --bench impair_relay --no-run`.
//! Without arguments (as `cargo bench` runs it) it prints its usage and exits 0.

#[path = "../tests/netns/impair.rs"]
mod impair;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use impair::{Impairment, Relay};

const USAGE: &str = "\
usage: impair_relay IF_A IF_B [--profile clean|reorder|loss2|mix] [--seed N] [--loss PCT]
                    [--dup PCT] [--corrupt PCT] [--delay MIN_MS-MAX_MS] [--max-secs N]
";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Options {
    a: String,
    b: String,
    imp: Impairment,
    seed: u64,
    max_secs: u64,
    profile: String,
}

fn ppm(flag: &str, v: &str) -> Result<u32, String> {
    let pct: f64 = v
        .parse()
        .map_err(|_| format!("{flag}: bad percentage {v:?}"))?;
    if !(0.0..=100.0).contains(&pct) {
        return Err(format!("{flag}: {pct} is not within 0-100"));
    }
    Ok((pct * 10_000.0).round() as u32)
}

fn millis(v: &str) -> Result<Duration, String> {
    let ms: f64 = v
        .parse()
        .map_err(|_| format!("--delay: bad milliseconds {v:?}"))?;
    if !(0.0..=1000.0).contains(&ms) {
        return Err(format!("--delay: {ms} ms is not within 0-1000"));
    }
    Ok(Duration::from_secs_f64(ms / 1e3))
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut positional = Vec::new();
    let mut imp = Impairment::default();
    let (mut seed, mut max_secs, mut profile) = (1u64, 3600u64, "custom".to_string());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") {
            positional.push(arg.clone());
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--profile" => {
                imp = Impairment::profile(v).ok_or_else(|| format!("unknown profile {v:?}"))?;
                profile = v.clone();
            }
            "--seed" => seed = v.parse().map_err(|_| format!("--seed: bad number {v:?}"))?,
            "--loss" => imp.loss_ppm = ppm(arg, v)?,
            "--dup" => imp.dup_ppm = ppm(arg, v)?,
            "--corrupt" => imp.corrupt_ppm = ppm(arg, v)?,
            "--delay" => {
                let (lo, hi) = v.split_once('-').unwrap_or((v, v));
                imp.delay_min = millis(lo)?;
                imp.delay_max = millis(hi)?;
                if imp.delay_max < imp.delay_min {
                    return Err("--delay: MIN_MS-MAX_MS with MIN_MS <= MAX_MS".into());
                }
            }
            "--max-secs" => {
                max_secs = v
                    .parse()
                    .map_err(|_| format!("--max-secs: bad number {v:?}"))?
            }
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    let [a, b] = <[String; 2]>::try_from(positional)
        .map_err(|_| "two interfaces, IF_A and IF_B, are needed".to_string())?;
    Ok(Options {
        a,
        b,
        imp,
        seed,
        max_secs,
        profile,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`.
    if args.is_empty() || args.iter().all(|a| a == "--bench") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("impair_relay: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
    let relay = match Relay::start(&o.a, &o.b, o.imp, o.seed) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("impair_relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "impair_relay ready: {} <-> {}, profile {} ({}), seed {}",
        o.a, o.b, o.profile, o.imp, o.seed
    );
    let deadline = Instant::now() + Duration::from_secs(o.max_secs);
    while !STOP.load(Ordering::Relaxed) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let report = relay.stop();
    println!("{}", report.lines(&o.a, &o.b));
    ExitCode::SUCCESS
}
