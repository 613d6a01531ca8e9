//! CONNECT requests refused by the AcceptPolicy (origin allow-list, authorize hook) or by the
//! application: the client sees the status.

mod server_common;

use http::StatusCode;
use server_common::{bounded, connect, connect_status, request_status, server};
use transport_core::AcceptPolicy;
use transport_wt::WtServerConfig;
use wtransport::error::ConnectingError;

fn policy_config() -> WtServerConfig {
    let mut policy = AcceptPolicy::default();
    policy.allow_origins(["https://ok.example"]);
    policy.authorize(|request| {
        if request.headers().contains_key("authorization") {
            Ok(())
        } else {
            Err(StatusCode::UNAUTHORIZED)
        }
    });
    let mut config = WtServerConfig::default();
    config.policy(policy);
    config
}

#[tokio::test]
async fn origin_and_authorize_refusals_carry_their_status() {
    let (mut server, cert) = server(policy_config());
    let addr = server.local_addr();

    let (status, _quic) = bounded(connect_status(
        addr,
        "/x",
        &[("origin", "https://evil.example")],
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _quic) = bounded(connect_status(addr, "/x", &[])).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "no Origin with an allow-list"
    );
    let (status, _quic) = bounded(connect_status(
        addr,
        "/x",
        &[("origin", "https://ok.example")],
    ))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "authorize hook");

    // An independent client sees a refusal too.
    let url = format!("{}/x", server.url());
    let refused = bounded(connect(&cert, &url, &[("origin", "https://evil.example")])).await;
    assert!(
        matches!(refused, Err(ConnectingError::SessionRejected)),
        "{refused:?}"
    );

    // Nothing refused reached the application; an allowed request does.
    let client = tokio::spawn({
        let cert = cert.clone();
        async move {
            connect(
                &cert,
                &url,
                &[
                    ("origin", "https://OK.example"),
                    ("authorization", "Bearer t"),
                ],
            )
            .await
        }
    });
    let incoming = bounded(server.accept()).await.unwrap();
    assert_eq!(
        incoming.request().origin.as_deref(),
        Some("https://OK.example")
    );
    let (_session, _) = bounded(incoming.accept()).await.unwrap();
    bounded(client).await.unwrap().unwrap();
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn application_rejects_with_a_status() {
    let (mut server, cert) = server(WtServerConfig::default());
    let addr = server.local_addr();
    let raw = tokio::spawn(async move { connect_status(addr, "/private", &[]).await });
    let incoming = bounded(server.accept()).await.unwrap();
    assert_eq!(incoming.request().path, "/private");
    bounded(incoming.reject(StatusCode::NOT_FOUND)).await;
    let (status, _quic) = bounded(raw).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);

    let url = format!("{}/private", server.url());
    let client = tokio::spawn(async move { connect(&cert, &url, &[]).await });
    let incoming = bounded(server.accept()).await.unwrap();
    bounded(incoming.reject(StatusCode::TOO_MANY_REQUESTS)).await;
    let refused = bounded(client).await.unwrap();
    assert!(
        matches!(refused, Err(ConnectingError::SessionRejected)),
        "{refused:?}"
    );
    assert_eq!(server.open_sessions(), 0);
}

#[tokio::test]
async fn plain_http3_requests_are_answered_and_not_queued() {
    let (mut server, cert) = server(WtServerConfig::default());
    let addr = server.local_addr();
    let get = http::Request::get(format!("https://{addr}/index.html"))
        .body(())
        .unwrap();
    let (status, _quic) = bounded(request_status(addr, get)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let plain_connect = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://{addr}/"))
        .body(())
        .unwrap();
    let (status, _quic) = bounded(request_status(addr, plain_connect)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // Then a WebTransport session on a fresh connection still works.
    let url = format!("{}/after", server.url());
    let client = tokio::spawn(async move { connect(&cert, &url, &[]).await });
    let (_session, request) = bounded(server.accept_session()).await.unwrap();
    assert_eq!(request.path, "/after");
    bounded(client).await.unwrap().unwrap();
}
