//! Opening the stream: non-200 statuses and wrong content types fail for good, redirects are
//! followed up to `max_redirects`, credentials stay on their origin, a server that never
//! answers times out.

mod client_common;

use std::time::Duration;

use client_common::{config, event, recv};
use test_servers::sse::{End, Reply, SseTestServer};
use transport_core::{Transport, TransportError};

async fn connect_error(server: &SseTestServer) -> TransportError {
    transport_sse::connect(&server.url("/events"), config())
        .await
        .expect_err("the connection is refused")
}

#[tokio::test]
async fn non_200_statuses_fail_without_retry() {
    for status in [204, 400, 401, 404, 500, 503] {
        let server = SseTestServer::start(vec![Reply::status(status)])
            .await
            .unwrap();
        assert_eq!(
            connect_error(&server).await,
            TransportError::HandshakeRejected { status }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(server.gets().len(), 1, "{status}: one request only");
        assert_eq!(server.accepted(), 1);
    }
}

#[tokio::test]
async fn wrong_or_missing_content_types_are_protocol_violations() {
    for (content_type, needle) in [
        (Some("text/html"), "text/html"),
        (Some("application/json; charset=utf-8"), "application/json"),
        (Some("text/event-streams"), "text/event-streams"),
        (None, "no Content-Type"),
    ] {
        let server = SseTestServer::start(vec![
            Reply::events(["data: x\n\n"]).content_type(content_type),
        ])
        .await
        .unwrap();
        let error = connect_error(&server).await;
        assert!(
            matches!(&error, TransportError::ProtocolViolation { reason } if reason.contains(needle)),
            "{content_type:?}: {error:?}"
        );
        assert!(!error.is_retryable());
        assert_eq!(server.gets().len(), 1);
    }
}

#[tokio::test]
async fn content_type_parameters_and_case_are_accepted() {
    for content_type in [
        "text/event-stream; charset=utf-8",
        "TEXT/Event-Stream",
        "text/event-stream;",
        "text/event-stream;charset=x-bogus",
    ] {
        let server = SseTestServer::start(vec![
            Reply::events(["data: x\n\n"])
                .content_type(Some(content_type))
                .then(End::Hang),
        ])
        .await
        .unwrap();
        let mut conn = transport_sse::connect(&server.url("/events"), config())
            .await
            .unwrap();
        assert_eq!(
            recv(&mut conn).await,
            event("x", None, None),
            "{content_type}"
        );
    }
}

#[tokio::test]
async fn redirect_chains_resolve_against_the_current_url() {
    // One server, every hop relative or naming this server: all requests land here.
    let mut replies = vec![
        Reply::redirect(301, "/a/b/moved"),
        Reply::redirect(302, "../again?x=1"),
        Reply::redirect(303, "?y=2"),
        Reply::redirect(307, "./temporary#fragment"),
        Reply::redirect(308, "permanent"),
    ];
    replies.push(Reply::events(["data: arrived\n\n"]).then(End::Hang));
    let server = SseTestServer::start(replies).await.unwrap();
    let mut c = config();
    c.transport.header("Authorization", "Bearer t").unwrap();
    let mut conn = transport_sse::connect(&server.url("/start"), c)
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("arrived", None, None));
    let gets = server.gets();
    let paths: Vec<&str> = gets.iter().map(|g| g.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/start",
            "/a/b/moved",
            "/a/again?x=1",
            "/a/again?y=2",
            "/a/temporary",
            "/a/permanent",
        ]
    );
    for get in &gets {
        assert_eq!(get.header("authorization"), Some("Bearer t"), "same origin");
        assert_eq!(get.header("accept"), Some("text/event-stream"));
    }
}

#[tokio::test]
async fn redirects_to_another_origin_drop_credentials() {
    let target = SseTestServer::start(vec![
        Reply::redirect(308, "/final"),
        Reply::events(["data: there\n\n"]).then(End::Hang),
    ])
    .await
    .unwrap();
    let network_path = format!("//{}/elsewhere", target.addr());
    let origin = SseTestServer::start(vec![
        Reply::redirect(301, "/next"),
        Reply::redirect(303, &network_path),
    ])
    .await
    .unwrap();
    let mut c = config();
    c.transport
        .header("Authorization", "Bearer t")
        .unwrap()
        .header("Cookie", "c=1")
        .unwrap()
        .header("X-Custom", "kept")
        .unwrap();
    let mut conn = transport_sse::connect(&origin.url("/events"), c)
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("there", None, None));
    for first in origin.gets() {
        assert_eq!(first.header("authorization"), Some("Bearer t"));
    }
    let gets = target.gets();
    let paths: Vec<&str> = gets.iter().map(|g| g.path.as_str()).collect();
    assert_eq!(paths, vec!["/elsewhere", "/final"]);
    for get in &gets {
        assert_eq!(get.header("authorization"), None);
        assert_eq!(get.header("cookie"), None);
        assert_eq!(get.header("x-custom"), Some("kept"));
    }
}

#[tokio::test]
async fn too_many_redirects_fail() {
    let server = SseTestServer::start(vec![Reply::redirect(302, "/loop")])
        .await
        .unwrap();
    let mut c = config();
    c.max_redirects(2);
    let error = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TransportError::ProtocolViolation { reason } if reason.contains("too many redirects")),
        "{error:?}"
    );
    assert_eq!(server.gets().len(), 3, "the request and two redirects");

    let mut c = config();
    c.max_redirects(0);
    let error = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::ProtocolViolation { .. }));
}

#[tokio::test]
async fn bad_redirects_fail() {
    for reply in [
        Reply::status(302),
        Reply::redirect(301, "ftp://example.invalid/x"),
    ] {
        let server = SseTestServer::start(vec![reply]).await.unwrap();
        let error = connect_error(&server).await;
        assert!(
            matches!(&error, TransportError::ProtocolViolation { .. }),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = SseTestServer::start(vec![Reply::stall()]).await.unwrap();
    let mut c = config();
    c.transport.connect_timeout(Duration::from_millis(300));
    let error = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        TransportError::Timeout {
            operation: "connect",
            after: Duration::from_millis(300)
        }
    );
}

#[tokio::test]
async fn unreachable_servers_and_bad_urls() {
    // A port nobody listens on: bind one, then free it.
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let error = transport_sse::connect(&format!("http://127.0.0.1:{port}/"), config())
        .await
        .unwrap_err();
    assert!(
        matches!(error, TransportError::ConnectionFailed { .. }),
        "{error:?}"
    );
    for bad in ["ws://127.0.0.1/", "127.0.0.1/events", "http:///x"] {
        let error = transport_sse::connect(bad, config()).await.unwrap_err();
        assert!(
            matches!(error, TransportError::InvalidUrl { .. }),
            "{bad}: {error:?}"
        );
    }
    let server = SseTestServer::start(vec![Reply::silent()]).await.unwrap();
    let conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    conn.close(1000, "").await.unwrap();
}
