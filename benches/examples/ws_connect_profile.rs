//! A fixed number of WebSocket connection set-ups (TCP + upgrade, then close), for profilers
//! whose totals divide by the count: `ws_connect_profile ours|bare|ours-client|bare-client COUNT` (both ends in this
//! process, one thread). Subtract a run with a smaller COUNT to get the cost of one set-up.

use std::time::Duration;

use futures_util::StreamExt;
use transport_core::{Connector, Transport};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("ours", String::as_str).to_owned();
    let count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if which == "ours" || which == "ours-client" {
            // `ours-client`: our client against the bare server (the client's share alone).
            let url = if which == "ours" {
                transport_benches::ours_ws_echo().await
            } else {
                transport_benches::bare_ws_echo().await
            };
            let connector =
                transport_ws::WsConnector::new(&url, transport_benches::ours_ws_config(false))
                    .expect("connector");
            for _ in 0..count {
                let conn = connector.connect().await.expect("connect");
                let _ = conn.close(1000, "").await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            // `bare-client`: the bare client against our server (the server's share alone).
            let url = if which == "bare-client" {
                transport_benches::ours_ws_echo().await
            } else {
                transport_benches::bare_ws_echo().await
            };
            for _ in 0..count {
                let mut ws = transport_benches::bare_ws_connect(&url).await;
                let _ = ws.close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
}
