//! A real [tinyproxy](https://tinyproxy.github.io/) HTTP proxy for tests.
//!
//! [`Tinyproxy::start`] writes a configuration into a fresh temporary directory, starts
//! `tinyproxy -d -c FILE` in the foreground on a port chosen by the OS, waits (with a deadline)
//! until it accepts connections, and returns a guard. Dropping the guard kills the process and
//! removes the directory.
//!
//! The configuration listens on 127.0.0.1 only, allows only 127.0.0.1, has no `ConnectPort`
//! line (tinyproxy then allows `CONNECT` to every port, see `tinyproxy.conf(5)`), logs at `Info`
//! level to a file in the temporary directory ([`Tinyproxy::log`]) and caps the number of
//! clients. With credentials it adds a `BasicAuth user password` line, so every request without
//! the right `Proxy-Authorization` is answered with 407.
//!
//! `tinyproxy` must be on `PATH` (`cargo xtask test-all` installs it; by hand:
//! `apt-get install tinyproxy`). When it is missing, [`Tinyproxy::start`] fails with an error
//! of kind [`io::ErrorKind::NotFound`] that says so.
//!
//! The harness is synchronous (it only uses `std`), so it works from sync and async tests alike;
//! starting blocks for at most [`READY_TIMEOUT`] per attempt.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one start attempt waits for tinyproxy to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times [`Tinyproxy::start`] picks a new port when tinyproxy fails to start (another
/// process may grab the port between the moment we learn it and the moment tinyproxy binds it).
const START_ATTEMPTS: u32 = 5;

/// The `MaxClients` value written into the configuration: tests open a handful of connections.
const MAX_CLIENTS: u32 = 16;

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running tinyproxy; killed, and its temporary directory removed, on drop.
#[derive(Debug)]
pub struct Tinyproxy {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    log_path: PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy on 127.0.0.1 on a free port, with `BasicAuth` when `auth` is
    /// `Some((user, password))`, and waits until it accepts connections.
    ///
    /// Fails with [`io::ErrorKind::NotFound`] when `tinyproxy` is not on `PATH`, with
    /// [`io::ErrorKind::InvalidInput`] when a credential cannot be written into tinyproxy's
    /// configuration (empty, or containing whitespace, quotes or `#`), and with
    /// [`io::ErrorKind::TimedOut`] or [`io::ErrorKind::Other`] when tinyproxy did not come up
    /// after a few attempts (the message then includes what tinyproxy printed).
    pub fn start(auth: Option<(&str, &str)>) -> io::Result<Self> {
        if let Some((user, password)) = auth {
            check_config_word("user", user)?;
            check_config_word("password", password)?;
        }
        let dir = make_temp_dir()?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&dir, auth) {
                Ok(mut proxy) => {
                    proxy.dir.clone_from(&dir);
                    return Ok(proxy);
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(error);
                }
                Err(error) => last_error = Some(error),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last_error.unwrap_or_else(|| io::Error::other("tinyproxy did not start")))
    }

    fn start_once(dir: &Path, auth: Option<(&str, &str)>) -> io::Result<Self> {
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log_path = dir.join("tinyproxy.log");
        let stderr_path = dir.join("stderr.txt");
        let config_path = dir.join("tinyproxy.conf");
        // A fresh log per attempt, so readiness is judged on this attempt's process alone.
        remove_if_exists(&log_path)?;
        std::fs::write(&config_path, config_text(port, &log_path, auth)?)?;

        let stderr = std::fs::File::create(&stderr_path)?;
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|error| {
                if error.kind() == io::ErrorKind::NotFound {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        "`tinyproxy` was not found on PATH: install it (`apt-get install \
                         tinyproxy`, or run `cargo xtask test-all`, which installs it)",
                    )
                } else {
                    io::Error::new(error.kind(), format!("cannot run tinyproxy: {error}"))
                }
            })?;
        // From here on the guard owns the process: any early return kills it. It does not own
        // the directory yet (an empty `dir`): that is shared by the attempts, `start` hands it
        // over once one succeeded.
        let mut proxy = Self {
            child,
            addr,
            dir: PathBuf::new(),
            log_path,
        };
        proxy.wait_ready(&stderr_path)?;
        Ok(proxy)
    }

    /// Polls until the process is alive, has opened its log (tinyproxy 1.11 opens it only after
    /// binding its listening socket) and accepts a TCP connection — or until the deadline.
    fn wait_ready(&mut self, stderr_path: &Path) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "tinyproxy exited during startup ({status}): {}",
                    stderr.trim()
                )));
            }
            if self.log_path.exists()
                && TcpStream::connect_timeout(&self.addr, POLL_INTERVAL * 5).is_ok()
            {
                // The probe connection itself may have been the last thing a dying process
                // saw (port taken by someone else): check once more that it is still alive.
                std::thread::sleep(POLL_INTERVAL);
                if self.child.try_wait()?.is_none() {
                    return Ok(());
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "tinyproxy did not accept connections on {} within {READY_TIMEOUT:?}",
                        self.addr
                    ),
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The address tinyproxy listens on (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy URL without credentials, like `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where tinyproxy writes its log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log written so far. At `Info` level it has one `Request (file descriptor N): CONNECT
    /// host:port HTTP/1.1` line per request, which tests use to prove that traffic really went
    /// through the proxy.
    pub fn log(&self) -> io::Result<String> {
        let bytes = std::fs::read(&self.log_path)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Polls the log until it contains `needle` or `timeout` has passed; returns whether it
    /// was found. Blocks the calling thread (briefly sleeping between reads).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log()?.contains(needle) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The configuration file for one start attempt.
fn config_text(port: u16, log_path: &Path, auth: Option<(&str, &str)>) -> io::Result<String> {
    let log = log_path
        .to_str()
        .filter(|p| !p.contains('"'))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "temporary path {} cannot be written into tinyproxy.conf",
                    log_path.display()
                ),
            )
        })?;
    let mut text = format!(
        "# Written by test-servers::tinyproxy. No ConnectPort line: CONNECT to any port is allowed.\n\
         Port {port}\n\
         Listen 127.0.0.1\n\
         Allow 127.0.0.1\n\
         Timeout 30\n\
         MaxClients {MAX_CLIENTS}\n\
         LogFile \"{log}\"\n\
         LogLevel Info\n\
         DisableViaHeader Yes\n"
    );
    if let Some((user, password)) = auth {
        let _ = writeln!(text, "BasicAuth {user} {password}");
    }
    Ok(text)
}

/// Refuses values that tinyproxy's configuration syntax cannot carry as one bare word.
fn check_config_word(what: &str, value: &str) -> io::Result<()> {
    let bad = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '#'));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "tinyproxy BasicAuth {what} {value:?} must be non-empty, without whitespace, \
                 quotes or '#'"
            ),
        ));
    }
    Ok(())
}

/// A port the OS considers free right now. Racy by nature (tinyproxy needs the number in its
/// configuration), hence the retries in [`Tinyproxy::start`].
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn make_temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "test-servers-tinyproxy-{}-{n}-{nanos}",
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "could not create a unique temporary directory for tinyproxy",
    ))
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_auth_and_no_connect_port() {
        let text = config_text(4242, Path::new("/tmp/x/tinyproxy.log"), Some(("u", "p")))
            .expect("plain path");
        assert!(text.contains("Port 4242\n"));
        assert!(text.contains("BasicAuth u p\n"));
        assert!(text.contains("LogFile \"/tmp/x/tinyproxy.log\"\n"));
        assert!(!text.lines().any(|l| l.starts_with("ConnectPort")));
    }

    #[test]
    fn rejects_credentials_tinyproxy_cannot_parse() {
        for bad in ["", "a b", "a\"b", "a#b", "a\nb"] {
            let error = check_config_word("user", bad).expect_err(bad);
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        }
        check_config_word("user", "alice").expect("plain word");
    }
}
