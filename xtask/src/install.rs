//! Installs the external peers the tests need: Debian packages and a Python venv.
//!
//! Everything here is idempotent and skips work that is already done, so a warm
//! machine pays a few milliseconds.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::proc::{self, project_root};

/// Debian packages the tests need, as (binary looked up on `PATH`, package providing it).
///
/// - `tinyproxy`: HTTP CONNECT proxy for the transport-ws proxy tests;
/// - `chromium`: headless browser for the transport-wt WebTransport interop test.
const APT_PACKAGES: &[(&str, &str)] = &[("tinyproxy", "tinyproxy"), ("chromium", "chromium")];

/// Python packages for the Python peers of the interop tests, pinned:
/// - `websockets`: tcat end-to-end tests (`TRANSPORT_PYTHON`);
/// - `aiohttp`, `aiohttp-sse`: transport-sse client interop test (`TRANSPORT_PYTHON_SSE`);
/// - `aioquic`: WebTransport server for the transport-wt client interop test
///   (`TRANSPORT_PYTHON_WT`).
const PYTHON_PACKAGES: &[&str] = &[
    "websockets==15.0.1",
    "aiohttp==3.14.5",
    "aiohttp-sse==3.0",
    "aioquic==1.7.2",
];

/// Environment variable naming the Python interpreter the tests use for Python peers.
pub(crate) const TRANSPORT_PYTHON: &str = "TRANSPORT_PYTHON";

/// The same, for the transport-sse tests; xtask points all three at the `.tools/py` venv.
pub(crate) const TRANSPORT_PYTHON_SSE: &str = "TRANSPORT_PYTHON_SSE";

/// The same, for the transport-wt tests.
pub(crate) const TRANSPORT_PYTHON_WT: &str = "TRANSPORT_PYTHON_WT";

/// Node packages for the Node peers of the interop tests, pinned: `eventsource` (a WHATWG
/// EventSource; 4.x is the last line that runs on Node 20) for the transport-sse interop test,
/// `playwright-core` (drives Debian's Chromium; no browser download) for the transport-wt one.
const NODE_PACKAGES: &[(&str, &str)] = &[("eventsource", "4.1.1"), ("playwright-core", "1.65.1")];

/// Environment variable naming the directory whose `node_modules` holds [`NODE_PACKAGES`].
pub(crate) const TRANSPORT_NODE_MODULES: &str = "TRANSPORT_NODE_MODULES";

const NPM_TIMEOUT: Duration = Duration::from_secs(10 * 60);

const APT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const PIP_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Installs the missing Debian packages from [`APT_PACKAGES`]: one `apt-get update`, one
/// `apt-get install`, both only when something is missing.
pub(crate) fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(bin, _)| proc::on_path(bin).is_none())
        .map(|&(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        eprintln!("apt: already installed: {}", names(APT_PACKAGES));
        return Ok(());
    }
    let sudo = !is_root()?;
    if sudo && proc::on_path("sudo").is_none() {
        bail!("need root (or sudo) to install {}", missing.join(" "));
    }
    let apt = |args: &[&str]| {
        let mut cmd = if sudo {
            let mut cmd = Command::new("sudo");
            cmd.args(["-n", "apt-get"]);
            cmd
        } else {
            Command::new("apt-get")
        };
        // Wait for a concurrent apt/dpkg instead of failing on its lock.
        cmd.args(["-qq", "-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        cmd
    };
    proc::output(&mut apt(&["update"]), APT_TIMEOUT).context("apt-get update")?;
    let mut install = apt(&["install", "-y", "--no-install-recommends"]);
    install.args(&missing);
    eprintln!("$ {}", proc::display(&install));
    proc::output(&mut install, APT_TIMEOUT).context("apt-get install")?;
    for (bin, pkg) in APT_PACKAGES {
        if proc::on_path(bin).is_none() {
            bail!("`{bin}` still not on PATH after installing {pkg}");
        }
    }
    Ok(())
}

fn names(pkgs: &[(&str, &str)]) -> String {
    pkgs.iter().map(|(_, p)| *p).collect::<Vec<_>>().join(" ")
}

fn is_root() -> Result<bool> {
    let uid = proc::output(Command::new("id").arg("-u"), Duration::from_secs(10))?;
    Ok(uid.trim() == "0")
}

/// The venv holding the Python peers: `.tools/py`.
fn venv_dir() -> PathBuf {
    project_root().join(".tools").join("py")
}

/// The venv's interpreter, if the venv exists.
pub(crate) fn existing_python_peer() -> Option<PathBuf> {
    let python = venv_dir().join("bin").join("python");
    python.is_file().then_some(python)
}

/// Creates `.tools/py` and installs [`PYTHON_PACKAGES`] unless already there; returns
/// the venv's interpreter (to be exported as [`TRANSPORT_PYTHON`]).
pub(crate) fn python_peers() -> Result<PathBuf> {
    let python = venv_dir().join("bin").join("python");
    if python.is_file() && pins_satisfied(&python) {
        eprintln!(
            "python: {} already in {}",
            PYTHON_PACKAGES.join(" "),
            venv_dir().display()
        );
        return Ok(python);
    }
    if !python.is_file() {
        let base = proc::on_path("python3").context("python3 not found on PATH")?;
        proc::run(
            Command::new(base).args(["-m", "venv"]).arg(venv_dir()),
            PIP_TIMEOUT,
        )
        .context("creating the Python venv")?;
    }
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ])
    .args(PYTHON_PACKAGES)
    .env("PIP_NO_INPUT", "1");
    proc::run(&mut pip, PIP_TIMEOUT).context("pip install of the Python peers")?;
    if !pins_satisfied(&python) {
        bail!("{} not importable after install", PYTHON_PACKAGES.join(" "));
    }
    Ok(python)
}

/// Does `python` have every pinned package at its pinned version?
fn pins_satisfied(python: &PathBuf) -> bool {
    let checks: Vec<String> = PYTHON_PACKAGES
        .iter()
        .filter_map(|pin| pin.split_once("=="))
        .map(|(name, version)| format!("importlib.metadata.version({name:?}) == {version:?}"))
        .collect();
    let script = format!(
        "import importlib.metadata, sys; sys.exit(0 if all([{}]) else 1)",
        checks.join(", ")
    );
    proc::output(
        Command::new(python).args(["-c", &script]),
        Duration::from_secs(30),
    )
    .is_ok()
}

/// The prefix holding the Node peers: `.tools/node`.
fn node_dir() -> PathBuf {
    project_root().join(".tools").join("node")
}

/// `.tools/node` if it already holds every pinned Node package.
pub(crate) fn existing_node_peers() -> Option<PathBuf> {
    node_pins_satisfied().then(node_dir)
}

fn node_pins_satisfied() -> bool {
    NODE_PACKAGES.iter().all(|(name, version)| {
        let manifest = node_dir()
            .join("node_modules")
            .join(name)
            .join("package.json");
        std::fs::read_to_string(manifest)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|json| json["version"] == *version)
    })
}

/// Installs [`NODE_PACKAGES`] into `.tools/node` with npm unless already there; returns the
/// prefix (to be exported as [`TRANSPORT_NODE_MODULES`]).
pub(crate) fn node_peers() -> Result<PathBuf> {
    if node_pins_satisfied() {
        eprintln!("node: peers already in {}", node_dir().display());
        return Ok(node_dir());
    }
    let npm = proc::on_path("npm")
        .context("npm not found on PATH (Node.js is needed for the SSE interop test)")?;
    std::fs::create_dir_all(node_dir()).context("creating .tools/node")?;
    let mut cmd = Command::new(npm);
    cmd.args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(node_dir())
        .args(
            NODE_PACKAGES
                .iter()
                .map(|(name, version)| format!("{name}@{version}")),
        )
        .stdin(Stdio::null());
    eprintln!("$ {}", proc::display(&cmd));
    proc::run(&mut cmd, NPM_TIMEOUT).context("npm install of the Node peers")?;
    if !node_pins_satisfied() {
        bail!(
            "Node peers missing from {} after npm install",
            node_dir().display()
        );
    }
    Ok(node_dir())
}
