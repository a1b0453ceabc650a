//! Fuzz target `sim`: see `smolecho_fuzz::sim`.
//!
//! Under cargo-fuzz (`--cfg fuzzing`) this is a libFuzzer binary; in a plain build it replays
//! the files named on its command line through the same harness.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    smolecho_fuzz::sim::run(data);
});

#[cfg(not(fuzzing))]
fn main() {
    smolecho_fuzz::replay_args(smolecho_fuzz::sim::run);
}
