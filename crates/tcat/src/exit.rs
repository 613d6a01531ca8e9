//! Exit codes and the failures that lead to them.

use std::fmt;
use std::process::ExitCode;

use transport_core::TransportError;

/// What a failed run exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// 1: connection or protocol error (refused, TLS, handshake rejected, peer closed with a
    /// code other than 1000, connection lost, unreadable input).
    Error,
    /// 2: usage error (bad option value, unknown URL scheme, unreadable certificate file).
    Usage,
    /// 3: a deadline passed (`--timeout`, `--connect-timeout`).
    Timeout,
}

impl Code {
    fn exit_code(self) -> u8 {
        match self {
            Self::Error => 1,
            Self::Usage => 2,
            Self::Timeout => 3,
        }
    }
}

/// A failed run: its exit code and the message printed on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: Code,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn error(message: impl Into<String>) -> Self {
        Self {
            code: Code::Error,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: Code::Usage,
            message: message.into(),
        }
    }

    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Self {
            code: Code::Timeout,
            message: message.into(),
        }
    }

    /// Classifies a transport error: timeouts exit 3, bad URLs and settings exit 2, the rest 1.
    pub(crate) fn transport(context: &str, error: &TransportError) -> Self {
        let message = format!("{context}: {error}");
        if error.is_timeout() {
            return Self::timeout(message);
        }
        match error {
            TransportError::InvalidUrl { .. } | TransportError::InvalidConfig(_) => {
                Self::usage(message)
            }
            _ => Self::error(message),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// How a run that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// Finished normally: exit 0.
    Finished,
    /// Stopped by a signal (a client interrupted by SIGINT/SIGTERM): exit 128 + signal number.
    Interrupted(i32),
}

/// The process exit code for a run's result; prints the failure on stderr.
pub(crate) fn report(result: Result<Done, Failure>) -> ExitCode {
    match result {
        Ok(Done::Finished) => ExitCode::SUCCESS,
        Ok(Done::Interrupted(signal)) => {
            ExitCode::from(u8::try_from(128 + signal.clamp(1, 127)).unwrap_or(u8::MAX))
        }
        Err(failure) => {
            eprintln!("tcat: {failure}");
            ExitCode::from(failure.code.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn transport_errors_map_to_codes() {
        let timeout = TransportError::Timeout {
            operation: "connect",
            after: Duration::from_secs(1),
        };
        assert_eq!(Failure::transport("x", &timeout).code, Code::Timeout);
        let url = TransportError::invalid_url("ws://", "missing host");
        assert_eq!(Failure::transport("x", &url).code, Code::Usage);
        let tls = TransportError::tls("unknown issuer");
        assert_eq!(Failure::transport("x", &tls).code, Code::Error);
        let closed = TransportError::ClosedByPeer {
            code: 1001,
            reason: "bye".into(),
        };
        let f = Failure::transport("connection closed", &closed);
        assert_eq!(f.code, Code::Error);
        assert!(f.message.contains("1001"), "{f}");
    }
}
