//! The fuzz harnesses of smolecho, shared by the cargo-fuzz targets (`fuzz_targets/`) and the
//! regression tests (`tests/regressions.rs`), which replay `regressions/<target>/*` on stable.
//!
//! - [`frames`]: Ethernet frames, raw and built around live TCP connections, into an echo node.
//! - [`sim`]: echo clients over a link with a fuzzer-chosen fault and clock schedule.
//! - [`conn`]: event sequences into the per-connection state machine.
//!
//! Every `run` function panics when a property fails and otherwise returns a small report, so
//! tests can also check that an input reaches the states it was written for.

pub mod conn;
pub mod frames;
pub mod net;
pub mod sim;

use std::path::{Path, PathBuf};

/// The saved inputs of `target` (`regressions/<target>/*`), sorted by name.
pub fn regression_inputs(target: &str) -> Vec<PathBuf> {
    saved_inputs("regressions", target)
}

/// Inputs that trigger a known bug in smoltcp itself (`known-upstream/<target>/`): kept out
/// of the replay and of the fuzz runs' seeds until the bug is fixed or worked around, and
/// replayed by an ignored test.
pub fn known_upstream_inputs(target: &str) -> Vec<PathBuf> {
    saved_inputs("known-upstream", target)
}

fn saved_inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .filter(|p| p.file_name().is_some_and(|n| n != ".gitkeep"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Replay the files named on the command line through `run` (the fuzz targets' `main` when
/// they are built without cargo-fuzz), printing each run's report on stdout.
pub fn replay_args<R: std::fmt::Debug>(run: impl Fn(&[u8]) -> R) {
    let mut count = 0usize;
    for path in std::env::args_os().skip(1) {
        let path = Path::new(&path);
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        eprintln!("replaying {} ({} bytes)", path.display(), data.len());
        let report = run(&data);
        println!("{}\t{report:?}", path.display());
        count += 1;
    }
    eprintln!("{count} input(s) replayed without a failure");
}
