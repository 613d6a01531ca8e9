//! A fixed number of WebTransport echo round trips, for profilers (callgrind, strace) whose
//! totals divide by the count: `wt_profile messages|quinn SIZE COUNT` (both ends in this
//! process, one thread, as in the `wt_echo_rtt` bench: `messages` is our message Transport
//! against our echo server, `quinn` a bare quinn bidirectional stream against a quinn echo).
//! Per round trip: the difference of two runs with different counts, divided by the difference.

use bytes::Bytes;
use transport_benches::wt;
use transport_core::{Message, Transport};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("messages", String::as_str).to_owned();
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let count: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let payload = Bytes::from(vec![0x5a; size]);
    let cert = wt::certificate();
    rt.block_on(async {
        if which == "messages" {
            let server = wt::ours_message_echo(&cert);
            let mut conn =
                transport_wt::connect_transport(&server.url, wt::ours_message_config(&cert))
                    .await
                    .expect("connect");
            for _ in 0..count {
                conn.send(Message::binary(payload.clone()))
                    .await
                    .expect("send");
                conn.recv().await.expect("recv").expect("message");
            }
        } else {
            let server = wt::quinn_echo(&cert);
            let endpoint = wt::quinn_client_endpoint();
            let quic = wt::quinn_connect(
                &endpoint,
                wt::quinn_client_config(&cert, false),
                server.addr,
            )
            .await;
            let (mut send, mut recv) = quic.open_bi().await.expect("stream");
            let mut back = vec![0u8; size];
            for _ in 0..count {
                send.write_all(&payload).await.expect("write");
                recv.read_exact(&mut back).await.expect("read");
            }
        }
    });
    println!("{which}: {count} round trips of {size} B");
}
