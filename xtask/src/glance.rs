//! The table at the top of `docs/benchmarks.md`: every figure issue #6 asks for, its target,
//! what this run measured and whether that met it, in the order. A ratio comes from
//! the group's paired table when the run has one (ours and the baseline alternated, the
//! steadier figure), else from criterion's medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::bench::{Extra, Row, baseline_of};

/// What the table is made from: criterion's groups and the tables saved beside them.
pub(crate) struct Inputs<'a> {
    pub(crate) groups: &'a BTreeMap<String, Vec<Row>>,
    pub(crate) extras: &'a [Extra],
}

/// One measured value of a figure, with its bound.
struct Measure {
    label: String,
    met: Option<bool>,
}

/// One row: a figure of the issue and what the run measured of it.
struct Line {
    figure: &'static str,
    compared: &'static str,
    target: &'static str,
    measures: Vec<Measure>,
    /// Said after the measures, without a verdict of its own (e.g. the loss under load).
    also: Option<String>,
}

impl Inputs<'_> {
    fn extra(&self, title: &str) -> Option<&Extra> {
        self.extras.iter().find(|e| e.title == title)
    }

    /// Ours / the group's baseline, same case, from criterion's medians.
    fn criterion_ratio(&self, group: &str, function: &str, case: &str) -> Option<f64> {
        let rows = self.groups.get(group)?;
        let base = baseline_of(group)?;
        let median = |f: &str| {
            rows.iter()
                .find(|r| r.function == f && r.value == case)
                .map(|r| r.median_ns)
        };
        Some(median(function)? / median(base)?)
    }

    /// The median of pair ratios of `case` in the paired table `title`.
    fn paired_ratio(&self, title: &str, case: &str) -> Option<f64> {
        let table = self.extra(title)?;
        let row = table
            .rows
            .iter()
            .find(|r| r.first().map(String::as_str) == Some(case))?;
        table
            .cell(row, "median of pair ratios")?
            .trim_end_matches('x')
            .parse()
            .ok()
    }

    /// A ratio judged against `limit`: the paired figure if there is one, else criterion's.
    fn ratio(
        &self,
        name: &str,
        paired: Option<(&str, &str)>,
        criterion: (&str, &str, &str),
        limit: f64,
    ) -> Measure {
        let (group, function, case) = criterion;
        let from_pairs = paired.and_then(|(title, case)| self.paired_ratio(title, case));
        let (value, how) = match from_pairs {
            Some(r) => (Some(r), " paired"),
            None => (self.criterion_ratio(group, function, case), ""),
        };
        match value {
            Some(r) => Measure {
                label: format!("{name} {r:.2}x{how}"),
                met: Some(r <= limit),
            },
            None => not_measured(name),
        }
    }

    /// A criterion median in milliseconds, judged against `limit_ms`.
    fn millis(&self, name: &str, group: &str, function: &str, limit_ms: f64) -> Measure {
        let median = self.groups.get(group).and_then(|rows| {
            rows.iter()
                .find(|r| r.function == function)
                .map(|r| r.median_ns / 1e6)
        });
        match median {
            Some(ms) => Measure {
                label: format!("{name} {ms:.0} ms"),
                met: Some(ms < limit_ms),
            },
            None => not_measured(name),
        }
    }

    /// The load tool's row for `protocol` served by ours.
    fn load_row(&self, protocol: &str) -> Option<(&Extra, &Vec<String>)> {
        let table = self.extra("load_idle_connections")?;
        let row = table.rows.iter().find(|r| {
            table.cell(r, "protocol") == Some(protocol) && table.cell(r, "server") == Some("ours")
        })?;
        Some((table, row))
    }

    /// Connections of `protocol` open at once: all of at least `want`, none failed.
    fn open(&self, protocol: &str, want: u64) -> Measure {
        let counts = self.load_row(protocol).and_then(|(t, row)| {
            let n = |col: &str| t.cell(row, col)?.parse::<u64>().ok();
            Some((n("connections")?, n("open")?, n("failed")?))
        });
        match counts {
            Some((tried, open, failed)) => Measure {
                label: format!("{protocol} {open}/{tried}"),
                met: Some(tried >= want && open == tried && failed == 0),
            },
            None => not_measured(protocol),
        }
    }

    /// Server memory per idle `protocol` connection, at most `limit_kib`.
    fn memory(&self, protocol: &str, limit_kib: f64) -> Measure {
        let kib = self.load_row(protocol).and_then(|(t, row)| {
            t.cell(row, "per connection")?
                .strip_suffix(" KiB")?
                .parse::<f64>()
                .ok()
        });
        match kib {
            Some(kib) => Measure {
                label: format!("{protocol} {kib:.1} KiB"),
                met: Some(kib <= limit_kib),
            },
            None => not_measured(protocol),
        }
    }

    /// The datagram loss of the largest burst, ours and quinn's, as the burst table says.
    fn burst_loss(&self) -> Option<String> {
        let table = self.extra("wt_datagram_burst")?;
        let burst = table
            .rows
            .iter()
            .filter_map(|r| table.cell(r, "burst")?.parse::<u64>().ok())
            .max()?;
        let loss = |who: &str| {
            table
                .rows
                .iter()
                .find(|r| {
                    table.cell(r, "implementation") == Some(who)
                        && table.cell(r, "burst") == Some(burst.to_string().as_str())
                })
                .and_then(|r| table.cell(r, "loss"))
        };
        Some(format!(
            "loss in a burst of {burst}: ours {}, quinn {}",
            loss("ours")?,
            loss("quinn")?
        ))
    }
}

fn not_measured(name: &str) -> Measure {
    Measure {
        label: format!("{name}: not measured"),
        met: None,
    }
}

fn line(
    figure: &'static str,
    compared: &'static str,
    target: &'static str,
    measures: Vec<Measure>,
) -> Line {
    Line {
        figure,
        compared,
        target,
        measures,
        also: None,
    }
}

/// The figures, in its order.
fn lines(i: &Inputs<'_>) -> Vec<Line> {
    let mut lines = websocket(i);
    lines.extend(webtransport(i));
    lines.extend(sse_adaptive_and_scale(i));
    lines
}

fn websocket(i: &Inputs<'_>) -> Vec<Line> {
    vec![
        line(
            "WS echo round trip, 32 B / 16 KiB",
            "bare tokio-tungstenite",
            "≤ 1.10x",
            vec![
                i.ratio("32 B", None, ("ws_echo_rtt", "ours", "32"), 1.10),
                i.ratio("16 KiB", None, ("ws_echo_rtt", "ours", "16384"), 1.10),
            ],
        ),
        line(
            "WS throughput, 100 connections × 20 B, windowed",
            "bare tokio-tungstenite",
            "≥ 1.0x (time ≤ 1.00x)",
            vec![i.ratio(
                "time",
                Some(("ws_paired", "throughput 100")),
                ("ws_throughput", "ours", "100"),
                1.0,
            )],
        ),
        line(
            "WS connection set-up, TCP + upgrade / with TLS",
            "bare tokio-tungstenite",
            "≤ 1.10x",
            vec![
                i.ratio(
                    "TCP",
                    Some(("ws_paired", "connect tcp")),
                    ("ws_connect", "ours", "tcp"),
                    1.10,
                ),
                i.ratio(
                    "TLS",
                    Some(("ws_paired", "connect tls")),
                    ("ws_connect", "ours", "tls"),
                    1.10,
                ),
            ],
        ),
    ]
}

fn webtransport(i: &Inputs<'_>) -> Vec<Line> {
    vec![
        line(
            "WT echo round trip on a bidi stream, 32 B / 16 KiB",
            "bare quinn stream echo",
            "≤ 1.10x",
            vec![
                i.ratio(
                    "session 32 B",
                    Some(("wt_paired", "echo 32 session")),
                    ("wt_echo_rtt", "ours", "32"),
                    1.10,
                ),
                i.ratio(
                    "session 16 KiB",
                    Some(("wt_paired", "echo 16384 session")),
                    ("wt_echo_rtt", "ours", "16384"),
                    1.10,
                ),
                i.ratio(
                    "messages 32 B",
                    Some(("wt_paired", "echo 32 messages")),
                    ("wt_echo_rtt", "ours-messages", "32"),
                    1.10,
                ),
                i.ratio(
                    "messages 16 KiB",
                    Some(("wt_paired", "echo 16384 messages")),
                    ("wt_echo_rtt", "ours-messages", "16384"),
                    1.10,
                ),
            ],
        ),
        Line {
            also: i.burst_loss(),
            ..line(
                "WT datagram round trip; loss under load",
                "bare quinn datagrams",
                "≤ 1.10x, loss reported",
                vec![
                    i.ratio(
                        "32 B",
                        Some(("wt_paired", "datagram 32")),
                        ("wt_datagram_rtt", "ours", "32"),
                        1.10,
                    ),
                    i.ratio(
                        "1000 B",
                        Some(("wt_paired", "datagram 1000")),
                        ("wt_datagram_rtt", "ours", "1000"),
                        1.10,
                    ),
                ],
            )
        },
        line(
            "WT session set-up, full / 0-RTT",
            "bare QUIC handshake",
            "≤ 1.5x",
            vec![
                i.ratio(
                    "full",
                    Some(("wt_paired", "setup full")),
                    ("wt_setup", "ours", "full"),
                    1.5,
                ),
                i.ratio(
                    "0-RTT",
                    Some(("wt_paired", "setup 0-rtt")),
                    ("wt_setup", "ours", "0-rtt"),
                    1.5,
                ),
            ],
        ),
    ]
}

fn sse_adaptive_and_scale(i: &Inputs<'_>) -> Vec<Line> {
    vec![
        line(
            "SSE parser throughput",
            "eventsource-stream",
            "≥ 2x (time ≤ 0.50x)",
            vec![i.ratio("time", None, ("sse_parser", "ours", ""), 0.5)],
        ),
        line(
            "SSE delivery latency, 32 B / 4 KiB",
            "raw hyper streaming body",
            "≤ 1.10x",
            vec![
                i.ratio(
                    "32 B",
                    Some(("sse_paired", "32")),
                    ("sse_latency", "ours", "32"),
                    1.10,
                ),
                i.ratio(
                    "4 KiB",
                    Some(("sse_paired", "4096")),
                    ("sse_latency", "ours", "4096"),
                    1.10,
                ),
            ],
        ),
        line(
            "Adaptive layer overhead, round trip / throughput",
            "the bare transport it picked (transport-ws)",
            "≤ 1.05x",
            vec![
                i.ratio(
                    "round trip",
                    Some(("adaptive_paired", "adaptive_rtt")),
                    ("adaptive_rtt", "ours-adaptive-ws", "32"),
                    1.05,
                ),
                i.ratio(
                    "throughput",
                    Some(("adaptive_paired", "adaptive_throughput")),
                    ("adaptive_throughput", "ours-adaptive-ws", "1024"),
                    1.05,
                ),
            ],
        ),
        line(
            "Time to connected, WT blocked / WS stalled too",
            "—",
            "< 300 ms / < 600 ms",
            vec![
                i.millis("WT blocked", "adaptive_connect", "wt-blackholed", 300.0),
                i.millis(
                    "WS stalled too",
                    "adaptive_connect",
                    "wt-blackholed-ws-stalled",
                    600.0,
                ),
            ],
        ),
        line(
            "Concurrent connections: WS / SSE / WT sessions",
            "—",
            "10,000 / 10,000 / 1,000, all succeed",
            vec![
                i.open("WebSocket", 10_000),
                i.open("SSE", 10_000),
                i.open("WebTransport", 1_000),
            ],
        ),
        line(
            "Server memory per idle connection: WS / SSE / WT",
            "bare servers (load table)",
            "≤ 16 / 16 / 64 KiB",
            vec![
                i.memory("WebSocket", 16.0),
                i.memory("SSE", 16.0),
                i.memory("WebTransport", 64.0),
            ],
        ),
    ]
}

/// The section, in Markdown. A quick run's figures are shown but not judged.
pub(crate) fn section(inputs: &Inputs<'_>, quick: bool) -> String {
    let mut md = String::from(
        "## At a glance: the targets of issue #6\n\n\
         Ratios are ours / the baseline in time (below 1.00x is faster); \"paired\" marks a \
         median of per-pair ratios from the paired tables below, the others are ratios of \
         criterion medians.\n\n\
         | figure | compared with | target | this run | verdict |\n|---|---|---|---|---|\n",
    );
    for line in lines(inputs) {
        let mut measured = line
            .measures
            .iter()
            .map(|m| match m.met {
                Some(false) => format!("**{}**", m.label),
                _ => m.label.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        if let Some(also) = &line.also {
            let _ = write!(measured, "; {also}");
        }
        let verdict = if quick {
            "not judged (quick run)"
        } else if line.measures.iter().any(|m| m.met.is_none()) {
            "not measured"
        } else if line.measures.iter().all(|m| m.met == Some(true)) {
            "met"
        } else {
            "**missed**"
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {measured} | {verdict} |",
            line.figure, line.compared, line.target
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(function: &str, value: &str, median_ns: f64) -> Row {
        Row::new(function, value, median_ns, None)
    }

    fn extra(title: &str, headers: &[&str], rows: &[&[&str]]) -> Extra {
        Extra::new(
            title,
            headers,
            rows.iter()
                .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
                .collect(),
        )
    }

    fn line_of<'a>(md: &'a str, figure: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(&format!("| {figure} |")))
            .unwrap_or_else(|| panic!("no line for {figure} in\n{md}"))
    }

    #[test]
    fn paired_figures_win_over_criterion_and_decide_the_verdict() {
        let mut groups = BTreeMap::new();
        groups.insert(
            "ws_echo_rtt".to_owned(),
            vec![
                row("ours", "32", 96.0),
                row("tokio-tungstenite", "32", 100.0),
                row("ours", "16384", 120.0),
                row("tokio-tungstenite", "16384", 100.0),
            ],
        );
        groups.insert(
            "ws_connect".to_owned(),
            vec![
                row("ours", "tcp", 200.0),
                row("tokio-tungstenite", "tcp", 100.0),
                row("ours", "tls", 100.0),
                row("tokio-tungstenite", "tls", 100.0),
            ],
        );
        let paired_headers = [
            "case",
            "ours median",
            "tokio-tungstenite median",
            "ratio of medians",
            "median of pair ratios",
            "pairs",
            "target",
        ];
        let extras = vec![
            extra(
                "ws_paired",
                &paired_headers,
                &[&["connect tcp", "", "", "1.9x", "1.05x", "300", ""]],
            ),
            extra(
                "load_idle_connections",
                &[
                    "protocol",
                    "server",
                    "connections",
                    "open",
                    "failed",
                    "per connection",
                ],
                &[
                    &["WebSocket", "ours", "10000", "10000", "0", "8.8 KiB"],
                    &[
                        "WebSocket",
                        "tokio-tungstenite",
                        "10000",
                        "10000",
                        "0",
                        "134.0 KiB",
                    ],
                    &["SSE", "ours", "10000", "9999", "1", "17.0 KiB"],
                ],
            ),
        ];
        let inputs = Inputs {
            groups: &groups,
            extras: &extras,
        };
        let md = section(&inputs, false);
        assert!(
            line_of(&md, "WS echo round trip, 32 B / 16 KiB")
                .ends_with("| 32 B 0.96x; **16 KiB 1.20x** | **missed** |"),
            "{md}"
        );
        // TCP from the pairs (criterion said 2.00x), TLS from criterion (no pair).
        assert!(
            line_of(&md, "WS connection set-up, TCP + upgrade / with TLS")
                .ends_with("| TCP 1.05x paired; TLS 1.00x | met |"),
            "{md}"
        );
        assert!(
            line_of(&md, "Concurrent connections: WS / SSE / WT sessions").ends_with(
                "| WebSocket 10000/10000; **SSE 9999/10000**; WebTransport: not measured | not measured |"
            ),
            "{md}"
        );
        assert!(
            line_of(&md, "Server memory per idle connection: WS / SSE / WT")
                .contains("WebSocket 8.8 KiB; **SSE 17.0 KiB**"),
            "{md}"
        );
        assert!(
            line_of(&md, "WS throughput, 100 connections × 20 B, windowed")
                .ends_with("| time: not measured | not measured |"),
            "{md}"
        );
        let quick = section(&inputs, true);
        assert!(
            line_of(&quick, "WS echo round trip, 32 B / 16 KiB")
                .ends_with("| not judged (quick run) |"),
            "{quick}"
        );
    }
}
