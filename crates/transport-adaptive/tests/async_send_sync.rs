//! Public handles and futures are `Send` (and `Sync` where shared).

use transport_adaptive::{AdaptiveConfig, AdaptiveConnection, AdaptiveServer, SessionTable};
use transport_core::Transport;

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>() {}

#[test]
fn handles_are_send_and_sync() {
    send_sync::<AdaptiveConnection>();
    send_sync::<AdaptiveServer>();
    send_sync::<SessionTable>();
    send_sync::<AdaptiveConfig>();
}

#[allow(dead_code)]
fn futures_are_send(server: &AdaptiveServer, conn: &mut AdaptiveConnection) {
    send(&transport_adaptive::connect(AdaptiveConfig::default()));
    send(&transport_adaptive::negotiate(
        "http://127.0.0.1:1",
        AdaptiveConfig::default(),
    ));
    send(&server.accept());
    send(&server.shutdown());
    send(&conn.send(transport_core::Message::text("x")));
    send(&conn.recv());
}
