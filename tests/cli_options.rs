//! The examples' command line (`examples/support/cli.rs`): what `--buffer-size` takes, its
//! defaults with and without `--offload`, and the pool bound, without running a server.

#[path = "../examples/support/cli.rs"]
#[allow(dead_code)]
mod cli;

use clap::Parser;
use cli::ServerOptions;

fn server(args: &[&str]) -> Result<ServerOptions, String> {
    let options =
        ServerOptions::try_parse_from(std::iter::once("tap_server").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
    options.check()?;
    Ok(options)
}

#[test]
fn the_buffer_size_defaults_to_128k_and_to_512k_with_offload() {
    assert_eq!(server(&[]).unwrap().buffer_size(), 128 << 10);
    assert_eq!(server(&["--offload"]).unwrap().buffer_size(), 512 << 10);
    // Given, it wins over both defaults.
    let given = server(&["--offload", "--buffer-size", "64K"]).unwrap();
    assert_eq!(given.buffer_size(), 64 << 10);
}

#[test]
fn buffer_sizes_take_bytes_or_a_k_or_m_suffix() {
    for (arg, bytes) in [
        ("4096", 4096),
        ("256k", 256 << 10),
        ("256K", 256 << 10),
        ("64KiB", 64 << 10),
        ("1M", 1 << 20),
        ("2mib", 2 << 20),
        ("64M", 64 << 20),
    ] {
        let options = server(&["--buffer-size", arg]).unwrap();
        assert_eq!(options.buffer_size(), bytes, "{arg}");
    }
}

#[test]
fn buffer_sizes_out_of_range_or_malformed_are_usage_errors() {
    for arg in [
        "4095",
        "3K",
        "65M",
        "1G",
        "",
        "K",
        "1.5M",
        "-1K",
        "99999999999999999999M",
    ] {
        let err = server(&[&format!("--buffer-size={arg}")]).expect_err(arg);
        assert!(err.contains("--buffer-size"), "{arg}: {err}");
    }
}

#[test]
fn the_pool_is_bounded_by_slots_times_two_buffers() {
    // 1024 slots x 2 x 4 MiB = 8 GiB: the most allowed.
    server(&["--slots", "1024", "--buffer-size", "4M"]).unwrap();
    let err = server(&["--slots", "1024", "--buffer-size", "8M"]).unwrap_err();
    assert!(
        err.contains("16384 MiB") && err.contains("8192 MiB"),
        "{err}"
    );
}
