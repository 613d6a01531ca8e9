//! SIGINT and SIGTERM as an async stream of "stop" requests.

use std::io;

/// SIGINT's number, reported as exit code 130.
pub(crate) const SIGINT: i32 = 2;
/// SIGTERM's number, reported as exit code 143.
#[cfg(unix)]
pub(crate) const SIGTERM: i32 = 15;

/// Listens for SIGINT and SIGTERM from the moment it is created (so a signal that arrives
/// before anyone awaits is not lost).
#[derive(Debug)]
pub(crate) struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. Must run inside the runtime.
    ///
    /// # Errors
    /// When a handler cannot be installed.
    pub(crate) fn install() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the next signal and returns its number.
    ///
    /// # Cancel safety
    /// Cancel safe: a signal is not lost when the future is dropped.
    pub(crate) async fn recv(&mut self) -> i32 {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => SIGINT,
                _ = self.term.recv() => SIGTERM,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            SIGINT
        }
    }
}
