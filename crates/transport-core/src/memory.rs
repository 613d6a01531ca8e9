//! In-memory connections for tests: the same [`Connection`] the network transports give,
//! carried over bounded channels inside the process, with faults you can inject.
//!
//! * [`pair`] gives two connected ends.
//! * [`endpoint`] gives a [`MemoryConnector`] (a [`Connector`] that reconnects through the
//!   configured policy) and a [`MemoryListener`] to accept on; [`MemoryListener::sever_all`]
//!   drops every link abruptly and [`MemoryListener::refuse`] makes new dials fail, so an
//!   application's reconnect handling can be tested without sockets.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use transport_core::{memory, Message, Transport, TransportConfig};
//!
//! let (a, mut b) = memory::pair(&TransportConfig::default());
//! a.send(Message::text("hi")).await.unwrap();
//! assert_eq!(b.recv().await.unwrap(), Some(Message::text("hi")));
//! a.close(1000, "bye").await.unwrap();
//! assert_eq!(b.recv().await.unwrap(), None);
//! # }
//! ```

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::driver::{self, Dial, DriverIo, IoEvent, RunOutcome};
use crate::{
    CloseFrame, Command, Connection, ConnectionInfo, Connector, Message, TransportConfig,
    TransportError,
};

const TRANSPORT: &str = "memory";

#[derive(Debug)]
enum Frame {
    Message(Message),
    Close(CloseFrame),
}

/// One end of an in-memory link.
#[derive(Debug)]
struct Link {
    tx: mpsc::Sender<Frame>,
    rx: mpsc::Receiver<Frame>,
    severed: CancellationToken,
}

fn link_pair(capacity: usize, severed: &CancellationToken) -> (Link, Link) {
    let (a_tx, b_rx) = mpsc::channel(capacity.max(1));
    let (b_tx, a_rx) = mpsc::channel(capacity.max(1));
    (
        Link {
            tx: a_tx,
            rx: a_rx,
            severed: severed.child_token(),
        },
        Link {
            tx: b_tx,
            rx: b_rx,
            severed: severed.child_token(),
        },
    )
}

/// Runs one end of a link. Like a socket driver, it keeps reading while a send waits for room
/// on the link and keeps taking sends while a delivery waits for the application: one message
/// may wait in each direction, and only that direction stops. (A loop that awaited either one
/// inside a branch could wait forever on a peer that echoes: the peer's driver waits on its
/// application, which waits on its own send, which waits on this end reading.)
async fn run_link(link: Link, io: &mut DriverIo, config: &TransportConfig) -> RunOutcome {
    let Link {
        tx,
        mut rx,
        severed,
    } = link;
    let lost = || RunOutcome::Failed(TransportError::lost("in-memory link severed"));
    let mut outgoing: Option<Message> = None;
    let mut incoming: Option<Message> = None;
    loop {
        let (want_room, want_command) = (incoming.is_some(), outgoing.is_none());
        tokio::select! {
            biased;
            () = severed.cancelled() => return lost(),
            permit = tx.reserve(), if outgoing.is_some() => match (permit, outgoing.take()) {
                (Ok(permit), Some(m)) => permit.send(Frame::Message(m)),
                _ => return lost(),
            },
            frame = rx.recv(), if incoming.is_none() => match frame {
                Some(Frame::Message(m)) => incoming = io.try_deliver(m).err(),
                Some(Frame::Close(frame)) => {
                    let _ = tx.try_send(Frame::Close(frame.clone()));
                    return RunOutcome::PeerClosed(frame);
                }
                None => return lost(),
            },
            event = poll_fn(|cx| io.poll_room_or_command(cx, want_room, want_command)),
                if want_room || want_command => match event {
                IoEvent::Room(room) => {
                    io.hand_over_waiting(&mut incoming, room);
                }
                IoEvent::Command(Command::Send(m)) => match tx.try_send(Frame::Message(m)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(Frame::Message(m))) => outgoing = Some(m),
                    Err(_) => return lost(),
                },
                IoEvent::Command(Command::Close(frame)) => {
                    let closing = close(&tx, &mut rx, io, incoming.take(), frame);
                    tokio::select! {
                        () = severed.cancelled() => {}
                        _ = tokio::time::timeout(config.close_timeout, closing) => {}
                    }
                    return RunOutcome::LocalClosed;
                }
            },
        }
    }
}

/// This side's close: the message still waiting for the application first, then the close
/// frame, then what the peer sent before its answer.
async fn close(
    tx: &mpsc::Sender<Frame>,
    rx: &mut mpsc::Receiver<Frame>,
    io: &mut DriverIo,
    waiting: Option<Message>,
    frame: CloseFrame,
) {
    if let Some(m) = waiting {
        io.deliver(m).await;
    }
    if tx.send(Frame::Close(frame)).await.is_err() {
        return;
    }
    while let Some(f) = rx.recv().await {
        match f {
            Frame::Message(m) => {
                io.deliver(m).await;
            }
            Frame::Close(_) => break,
        }
    }
}

fn spawn_side(config: &TransportConfig, link: Link) -> Connection {
    let config_for_run = config.clone();
    driver::spawn_accepted(
        config,
        ConnectionInfo::new(TRANSPORT),
        move |mut io| async move {
            let outcome = run_link(link, &mut io, &config_for_run).await;
            (outcome, io)
        },
    )
}

/// Two connected in-memory connections, both in state `Connected`.
pub fn pair(config: &TransportConfig) -> (Connection, Connection) {
    let token = CancellationToken::new();
    let (a, b) = link_pair(config.send_buffer, &token);
    (spawn_side(config, a), spawn_side(config, b))
}

#[derive(Debug)]
struct ListenerShared {
    accept_tx: mpsc::Sender<Link>,
    refusing: AtomicBool,
    generation: Mutex<CancellationToken>,
}

/// Accepts in-memory connections made by its [`MemoryConnector`].
#[derive(Debug)]
pub struct MemoryListener {
    accept_rx: mpsc::Receiver<Link>,
    shared: Arc<ListenerShared>,
    config: TransportConfig,
}

/// Connects to a [`MemoryListener`]; reconnects through `config.reconnect` when a link drops.
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    shared: Arc<ListenerShared>,
    config: TransportConfig,
}

/// A listener and a connector bound to it. `config` applies to both sides.
pub fn endpoint(config: &TransportConfig) -> (MemoryConnector, MemoryListener) {
    let (accept_tx, accept_rx) = mpsc::channel(16);
    let shared = Arc::new(ListenerShared {
        accept_tx,
        refusing: AtomicBool::new(false),
        generation: Mutex::new(CancellationToken::new()),
    });
    (
        MemoryConnector {
            shared: shared.clone(),
            config: config.clone(),
        },
        MemoryListener {
            accept_rx,
            shared,
            config: config.clone(),
        },
    )
}

impl MemoryListener {
    /// The next connection, or `None` when every connector is gone.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<Connection> {
        let link = self.accept_rx.recv().await?;
        Some(spawn_side(&self.config, link))
    }

    /// Drops every current link abruptly, as a network failure would (no close handshake).
    pub fn sever_all(&self) {
        let mut current = self
            .shared
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        current.cancel();
        *current = CancellationToken::new();
    }

    /// Makes new dials fail with a connection-refused error (`true`) or succeed again (`false`).
    pub fn refuse(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::Release);
    }
}

struct MemoryDial {
    shared: Arc<ListenerShared>,
    config: TransportConfig,
}

impl Dial for MemoryDial {
    type Link = Link;

    async fn dial(&mut self) -> Result<Link, TransportError> {
        if self.shared.refusing.load(Ordering::Acquire) {
            return Err(TransportError::connection_failed(
                "in-memory listener refused",
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            ));
        }
        let token = self
            .shared
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (ours, theirs) = link_pair(self.config.send_buffer, &token);
        self.shared.accept_tx.send(theirs).await.map_err(|_| {
            TransportError::connection_failed(
                "in-memory listener is gone",
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            )
        })?;
        Ok(ours)
    }

    fn info(&self, _link: &Link) -> ConnectionInfo {
        ConnectionInfo::new(TRANSPORT)
    }

    async fn run(&mut self, link: Link, io: &mut DriverIo) -> RunOutcome {
        run_link(link, io, &self.config).await
    }
}

impl Connector for MemoryConnector {
    type Transport = Connection;

    async fn connect(&self) -> Result<Connection, TransportError> {
        let dial = MemoryDial {
            shared: self.shared.clone(),
            config: self.config.clone(),
        };
        driver::connect(dial, &self.config, TRANSPORT).await
    }
}
