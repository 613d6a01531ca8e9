//! The Python interpreter with aioquic that the aioquic interop tests run.
#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The Python interpreter to use, `None` (after a SKIP notice naming `test`) when there is
/// none with aioquic; under CI a missing one is a failure.
pub fn python(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("TRANSPORT_PYTHON_WT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv-wt/bin/python"),
        PathBuf::from,
    );
    let works = std::process::Command::new(&python)
        .args(["-c", "import aioquic"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(python);
    }
    let what = format!(
        "no Python with aioquic at {} (set TRANSPORT_PYTHON_WT, or: python3 -m venv .tools/venv-wt \
         && .tools/venv-wt/bin/pip install aioquic==1.7.2)",
        python.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{what}");
    // Straight to stderr, past the test harness's capture, so the skip shows.
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {what}");
    None
}
