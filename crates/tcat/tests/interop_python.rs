//! Interop with an independent implementation: Python `websockets`.
//!
//! The interpreter comes from `TRANSPORT_PYTHON` (set by `cargo xtask test-all`, which installs
//! `websockets` into a venv); without it, `python3` is used when it can import
//! `websockets.asyncio`. Otherwise the tests print a SKIP reason and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{Proc, WAIT, run, serve};

/// The Python interpreter to use, or `None` (with a SKIP note) when none is available.
fn python(test: &str) -> Option<String> {
    if let Ok(python) = std::env::var("TRANSPORT_PYTHON") {
        // Promised by the caller: a missing module is a failure, not a skip.
        return Some(python);
    }
    let usable = Command::new("python3")
        .args([
            "-c",
            "import websockets.asyncio.server, websockets.asyncio.client",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if usable {
        Some("python3".into())
    } else {
        eprintln!(
            "SKIP {test}: no Python with `websockets` (>= 13) found; set TRANSPORT_PYTHON or run \
             `cargo xtask test-all`"
        );
        None
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py")
        .join(name)
}

/// Starts the Python echo server; returns it and its `ws://` URL.
fn python_echo_server(python: &str) -> (Proc, String) {
    let mut cmd = Command::new(python);
    cmd.arg(script("echo_server.py")).arg("60");
    let mut server = Proc::spawn(&mut cmd);
    let port = server.wait_line(WAIT, |l| l.trim().parse::<u16>().is_ok());
    (server, format!("ws://127.0.0.1:{}/", port.trim()))
}

#[test]
fn tcat_connect_to_python_echo_server() {
    let Some(python) = python("tcat_connect_to_python_echo_server") else {
        return;
    };
    let (_server, url) = python_echo_server(&python);
    let lines = ["first", "ünïcödé ✓ 😀", "", "last"];
    let input = lines.join("\n") + "\n";
    let out = run(&["connect", &url], input.as_bytes());
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, lines);
}

#[test]
fn tcat_connect_json_and_binary_to_python_echo_server() {
    let Some(python) = python("tcat_connect_json_and_binary_to_python_echo_server") else {
        return;
    };
    let (_server, url) = python_echo_server(&python);

    let out = run(&["connect", "--format", "json", &url], "tëxt\n".as_bytes());
    assert_eq!(out.code(), Some(0), "{out:?}");
    let value: serde_json::Value = serde_json::from_str(&out.stdout[0]).unwrap();
    assert_eq!(value, serde_json::json!({"type": "text", "data": "tëxt"}));

    let out = run(
        &["connect", "--binary", "--format", "json", &url],
        b"bin\n\x00\xff\n",
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.len(), 2, "{out:?}");
    for (line, expected) in out.stdout.iter().zip([&b"bin"[..], &b"\x00\xff"[..]]) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["type"], "binary", "{line}");
        let data = BASE64.decode(value["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, expected);
    }
}

#[test]
fn python_client_against_tcat_serve_echo() {
    let Some(python) = python("python_client_against_tcat_serve_echo") else {
        return;
    };
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    let mut cmd = Command::new(&python);
    cmd.arg(script("client.py")).arg(server.url()).arg("20");
    let out = Proc::spawn(&mut cmd).finish(WAIT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        vec!["ok close_sent=1000 close_rcvd=1000"],
        "{out:?}"
    );
}
