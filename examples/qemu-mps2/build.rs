//! Puts `memory.x` and `device.x` where the linker (through cortex-m-rt's `link.x`) finds
//! them. `device.x` is empty: every interrupt vector of `src/vectors.rs` names
//! `DefaultHandler` directly.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("write memory.x");
    fs::write(out.join("device.x"), "/* no device interrupt handlers */\n")
        .expect("write device.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}
