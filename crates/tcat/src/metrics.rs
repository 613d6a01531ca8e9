//! `tcat serve --metrics ADDR`: the Prometheus recorder behind the `metrics` facade the servers
//! record into (names in `docs/metrics.md`), and a small hyper server answering
//! `GET /metrics` with its text exposition (the exporter's own listener is left out: it would
//! bring a second HTTP stack).
//!
//! tcat adds one gauge of its own, [`TASKS`]: its live tasks (listeners, one per client,
//! broadcast writers), counted by its task tracker at each scrape. `cargo xtask soak` watches
//! it come back to its baseline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::exit::Failure;

/// Gauge: tcat's live tasks (its `TaskTracker`), set at each scrape.
pub(crate) const TASKS: &str = "tcat_tasks";

/// How long a scrape connection may take to send its request.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The Prometheus endpoint, bound and with the recorder installed, not serving yet.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    listener: TcpListener,
    handle: PrometheusHandle,
}

impl MetricsServer {
    /// Installs the process-wide recorder and binds `addr`. Call before any server starts, so
    /// every connection's counters register with it.
    pub(crate) async fn bind(addr: &str) -> Result<Self, Failure> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::error(format!("binding --metrics {addr}: {e}")))?;
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| Failure::error(format!("installing the metrics recorder: {e}")))?;
        Ok(Self { listener, handle })
    }

    /// `http://ADDR/metrics`.
    pub(crate) fn url(&self) -> String {
        let addr = self
            .listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a: SocketAddr| a.to_string());
        format!("http://{addr}/metrics")
    }

    /// Serves scrapes until `stop`; `tasks` is the tracker whose size [`TASKS`] reports.
    pub(crate) async fn run(self, stop: CancellationToken, tracker: TaskTracker) {
        let tasks = metrics::gauge!(TASKS);
        loop {
            let (tcp, peer) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        warn!(error = %e, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let handle = self.handle.clone();
            let stop = stop.clone();
            let (tasks, tracker2) = (tasks.clone(), tracker.clone());
            tracker.spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let handle = handle.clone();
                    // This scrape's own connection task is not counted.
                    let live = tracker2.len().saturating_sub(1);
                    tasks.set(f64::from(u32::try_from(live).unwrap_or(u32::MAX)));
                    async move { Ok::<_, Infallible>(answer(&req, &handle)) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let serve = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                tokio::select! {
                    () = stop.cancelled() => {}
                    result = serve => if let Err(e) = result {
                        debug!(%peer, error = %e, "metrics: connection failed");
                    },
                }
            });
        }
    }
}

fn answer<B>(req: &Request<B>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, body, content_type) = if req.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            String::from("not found\n"),
            "text/plain",
        )
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            String::from("use GET\n"),
            "text/plain",
        )
    } else {
        (
            StatusCode::OK,
            handle.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
