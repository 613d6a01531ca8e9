//! A fixed number of WebSocket echo round trips, for profilers (callgrind, strace) whose totals
//! divide by the count: `ws_profile ours|bare SIZE COUNT [WINDOW]` (both ends in this process,
//! one thread; WINDOW messages in flight, default 1). `WS_READ_BUFFER=BYTES` sets our client's and server's read buffer (default 4 KiB).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use transport_core::{Message, Transport};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("ours", String::as_str).to_owned();
    let size: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(16 * 1024);
    let count: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let window: usize = args
        .get(4)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .clamp(1, count.max(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let payload = Bytes::from(vec![0x5a; size]);
    rt.block_on(async {
        if which == "ours" {
            let read_buffer: Option<usize> = std::env::var("WS_READ_BUFFER")
                .ok()
                .and_then(|v| v.parse().ok());
            let mut server = transport_ws::WsServerConfig::default();
            server.ip_limits = transport_core::IpLimits::unlimited();
            let mut client = transport_benches::ours_ws_config(false);
            if let Some(bytes) = read_buffer {
                server.read_buffer_size = bytes;
                client.read_buffer_size = bytes;
            }
            let url = transport_benches::ours_ws_echo_config(server, None).await;
            let mut conn = transport_ws::connect(&url, client).await.expect("connect");
            for _ in 0..window {
                conn.send(Message::binary(payload.clone()))
                    .await
                    .expect("send");
            }
            for i in 0..count {
                conn.recv().await.expect("recv").expect("message");
                if i + window < count {
                    conn.send(Message::binary(payload.clone()))
                        .await
                        .expect("send");
                }
            }
        } else {
            let url = transport_benches::bare_ws_echo().await;
            let mut ws = transport_benches::bare_ws_connect(&url).await;
            for _ in 0..window {
                ws.feed(WsMessage::Binary(payload.clone()))
                    .await
                    .expect("feed");
            }
            ws.flush().await.expect("flush");
            for i in 0..count {
                ws.next().await.expect("message").expect("ok");
                if i + window < count {
                    ws.send(WsMessage::Binary(payload.clone()))
                        .await
                        .expect("send");
                }
            }
        }
    });
    println!("{which}: {count} round trips of {size} B");
}
