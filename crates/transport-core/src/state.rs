//! Connection states, their legal transitions, and a watchable state cell.

use tokio::sync::watch;

/// Where a connection is in its life.
///
/// ```text
///                 connect()
///  Disconnected ─────────────▶ Connecting ──────▶ Connected ◀────────┐
///       ▲                          │                  │               │
///       │ close (from any state)   │ gave up          │ dropped       │ reconnected
///       │                          ▼                  ▼               │
///       └──────────────────────  Failed ◀──────── Reconnecting ───────┘
///                                          gave up
/// ```
///
/// `Failed` is terminal for a connection handle: a new `connect` starts a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Not connected: never connected, or closed (cleanly or not) and not coming back.
    Disconnected,
    /// The first connection attempt is in progress.
    Connecting,
    /// Connected; messages flow.
    Connected,
    /// The connection dropped unexpectedly and the reconnect policy is trying again.
    Reconnecting,
    /// Connecting or reconnecting gave up (the policy is exhausted or the error is permanent).
    Failed,
}

impl ConnectionState {
    /// Whether the design allows going from `self` to `next`.
    ///
    /// Any state may return to `Disconnected` (a close); staying in the same state is not a
    /// transition and is refused.
    pub fn can_transition_to(self, next: Self) -> bool {
        use ConnectionState as S;
        matches!(
            (self, next),
            (
                S::Connecting | S::Connected | S::Reconnecting | S::Failed,
                S::Disconnected
            ) | (S::Disconnected | S::Failed, S::Connecting)
                | (S::Connecting | S::Reconnecting, S::Connected | S::Failed)
                | (S::Connected, S::Reconnecting)
        )
    }

    /// Whether messages can flow now.
    pub fn is_connected(self) -> bool {
        self == Self::Connected
    }

    /// Whether the connection is over for good (`Disconnected` or `Failed`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Disconnected | Self::Failed)
    }
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Disconnected => "disconnected",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Failed => "failed",
        })
    }
}

/// An illegal state transition was attempted (a bug in a transport, reported not panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal connection state transition {from} -> {to}")]
pub struct IllegalTransition {
    /// The state the connection was in.
    pub from: ConnectionState,
    /// The state that was refused.
    pub to: ConnectionState,
}

/// The state of one connection, shared by its driver (which changes it) and its handles (which
/// read and watch it).
#[derive(Debug)]
pub struct StateCell {
    tx: watch::Sender<ConnectionState>,
}

impl StateCell {
    /// A cell starting in `initial`.
    pub fn new(initial: ConnectionState) -> Self {
        Self {
            tx: watch::Sender::new(initial),
        }
    }

    /// The current state.
    pub fn get(&self) -> ConnectionState {
        *self.tx.borrow()
    }

    /// A receiver that sees every change (`changed().await`, then `borrow()`).
    pub fn subscribe(&self) -> watch::Receiver<ConnectionState> {
        self.tx.subscribe()
    }

    /// Moves to `next` if the transition is legal; a no-op returning `Ok` when already there.
    ///
    /// # Errors
    /// [`IllegalTransition`] when the design does not allow it; the state is left unchanged.
    pub fn transition(&self, next: ConnectionState) -> Result<(), IllegalTransition> {
        let mut result = Ok(());
        self.tx.send_if_modified(|state| {
            if *state == next {
                false
            } else if state.can_transition_to(next) {
                *state = next;
                true
            } else {
                result = Err(IllegalTransition {
                    from: *state,
                    to: next,
                });
                false
            }
        });
        if let Err(e) = result {
            tracing::error!(%e, "transport bug");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionState as S;
    use super::*;

    const ALL: [S; 5] = [
        S::Disconnected,
        S::Connecting,
        S::Connected,
        S::Reconnecting,
        S::Failed,
    ];

    #[test]
    fn transition_table() {
        let legal = [
            (S::Disconnected, S::Connecting),
            (S::Connecting, S::Connected),
            (S::Connecting, S::Failed),
            (S::Connecting, S::Disconnected),
            (S::Connected, S::Reconnecting),
            (S::Connected, S::Disconnected),
            (S::Reconnecting, S::Connected),
            (S::Reconnecting, S::Failed),
            (S::Reconnecting, S::Disconnected),
            (S::Failed, S::Connecting),
            (S::Failed, S::Disconnected),
        ];
        for from in ALL {
            for to in ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn any_state_can_close() {
        for s in ALL {
            if s != S::Disconnected {
                assert!(s.can_transition_to(S::Disconnected));
            }
        }
    }

    #[tokio::test]
    async fn cell_reports_changes_and_refuses_illegal_ones() {
        let cell = StateCell::new(S::Disconnected);
        let mut rx = cell.subscribe();
        cell.transition(S::Connecting).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), S::Connecting);
        assert_eq!(
            cell.transition(S::Reconnecting),
            Err(IllegalTransition {
                from: S::Connecting,
                to: S::Reconnecting
            })
        );
        assert_eq!(cell.get(), S::Connecting);
        assert!(!rx.has_changed().unwrap());
        // Same state: no-op, no notification.
        cell.transition(S::Connecting).unwrap();
        assert!(!rx.has_changed().unwrap());
        cell.transition(S::Connected).unwrap();
        assert_eq!(*rx.borrow_and_update(), S::Connected);
    }
}
