//! `cargo xtask bench [--quick]`: runs the criterion benches of `benches/`, then writes
//! `docs/benchmarks.md` (medians and ratios against the bare library of each group, the
//! machine it ran on) and one SVG bar chart per group under `docs/bench/`.
//!
//! Each criterion group holds, in one run, our implementation, the bare library it wraps and
//! (where it applies) a raw floor; the ratio column divides by the group's baseline, and the
//! target column says whether ours met the target for that group.
//!
//! The page opens with a table of every figure issue #6 asks for, its target and this run's
//! verdict (`glance.rs`). `--report-only` writes the page again from the last run's results.
//!
//! Results measured outside criterion (datagram loss under load; the load tool
//! `transport-load`: concurrent idle connections and server memory per connection) are saved
//! by the benches as JSON tables under `target/bench-extra` (`TRANSPORT_BENCH_EXTRA`) and
//! appended to the page.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

use crate::glance;
use crate::proc::{self, project_root, target_dir};
use crate::soak::report as soak;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Short warm-up and measurement, and small connection counts for the load tool (a few
    /// minutes in all): for CI smoke runs.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Run nothing: write docs/benchmarks.md and its plots again from the results the last
    /// run left (target/criterion, target/bench-extra), e.g. after editing the page's notes.
    #[arg(long)]
    pub(crate) report_only: bool,
}

/// Deadline of the load tool's run (it bounds each of its own waits too).
const LOAD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The baseline of each group: the bare library ours wraps.
const BASELINES: &[(&str, &str)] = &[
    ("ws_echo_rtt", "tokio-tungstenite"),
    ("ws_connect", "tokio-tungstenite"),
    ("ws_throughput", "tokio-tungstenite"),
    ("wt_echo_rtt", "quinn"),
    ("wt_datagram_rtt", "quinn"),
    ("wt_setup", "quinn"),
    ("sse_latency", "raw-hyper"),
    ("sse_parser", "eventsource-stream"),
    ("adaptive_rtt", "transport-ws"),
    ("adaptive_throughput", "transport-ws"),
];

/// What each group measures, printed under its heading.
const NOTES: &[(&str, &str)] = &[
    (
        "ws_echo_rtt",
        "One echo round trip on an open connection, client and server of the same \
         implementation; raw-tcp: length-prefixed frames over TCP (the floor); fastwebsockets: \
         its client and echo server (hyper upgrade), a reference without a verdict.",
    ),
    (
        "ws_connect",
        "From connect to a usable connection: TCP connect + WebSocket upgrade (tcp), with a \
         TLS 1.3 handshake first (tls; P-256 certificate, same rustls settings on both sides).",
    ),
    (
        "ws_throughput",
        "100 connections, 20 B binary messages, each connection keeping 16 messages in flight \
         (like uWebSockets' load_test): 100 round trips per connection per iteration, 10,000 \
         messages. Echo servers of the same implementation; the bare client batches its replies \
         (feed, then one flush) and the bare server is tokio-tungstenite's echo example \
         (`forward`); fastwebsockets (client and server, each frame written as sent) is a \
         reference without a verdict. Higher msg/s is better; the ratio is of time, so below \
         1.00x is faster.",
    ),
    (
        "wt_echo_rtt",
        "One echo round trip on an open bidirectional stream. ours: our client and server, raw \
         session API; ours-messages: our message Transport over it (framed messages, both \
         sides); quinn: bare quinn client and server, QUIC without HTTP/3 (the floor; same \
         certificate and TLS provider); wtransport: its client and server.",
    ),
    (
        "wt_datagram_rtt",
        "One datagram round trip, one datagram in flight (a lost one is resent after 100 ms, \
         so a loss shows as a slow sample). Loss under load: see wt_datagram_burst below.",
    ),
    (
        "wt_setup",
        "From connect to a usable session. ours: QUIC handshake + HTTP/3 SETTINGS + extended \
         CONNECT answered 200; quinn: the QUIC handshake alone (the floor). Both bind a fresh \
         UDP socket per connection, as our client does. full: a full TLS handshake on both sides \
         (no session resumption). 0-rtt: resumption with a ticket from an earlier connection; \
         ours sends its SETTINGS as 0-RTT data (the CONNECT, not safe to replay, waits for the \
         handshake) and waits for the 200, quinn waits until the server accepted the early data \
         (handshake done).",
    ),
    (
        "sse_latency",
        "Delivery latency: the server application hands over one event, the client application \
         holds it. ours: our server session → our client (parsed into a message); raw-hyper: a \
         hyper HTTP/1.1 streaming body fed by a channel, read frame by frame by a raw hyper \
         client (no SSE parsing; the floor).",
    ),
    (
        "sse_parser",
        "Parsing a realistic event stream (sans-IO), ours against eventsource-stream.",
    ),
    (
        "adaptive_rtt",
        "One echo round trip through the adaptive transport and its session layer against our \
         server, over the transport it picked: ours-adaptive-ws against the bare transport-ws \
         connection it wraps (the baseline) and tokio-tungstenite; adaptive-wt and adaptive-sse \
         for reference (ratios to WebSocket, no verdict).",
    ),
    (
        "adaptive_throughput",
        "1 KiB messages, 32 in flight, through the adaptive transport over WebSocket against the \
         bare transport-ws connection.",
    ),
    (
        "adaptive_connect",
        "Time to connected (race won and health check answered), median of the tries: \
         wt-open (WebTransport answers), wt-blackholed (UDP silently dropped: WebSocket wins; \
         target < 300 ms), wt-blackholed-ws-stalled (WebSocket accepts TCP and never answers \
         too: SSE wins; target < 600 ms).",
    ),
];

/// The targets of issue #6: the largest ratio of time (ours / baseline, same case) each group
/// allows for our rows (those named `ours*`). For throughput, a time ratio of at most 1.0 is
/// a message rate at least the baseline's.
const TARGETS: &[(&str, f64)] = &[
    ("ws_echo_rtt", 1.10),
    ("ws_connect", 1.10),
    ("ws_throughput", 1.0),
    ("wt_echo_rtt", 1.10),
    ("wt_datagram_rtt", 1.10),
    ("wt_setup", 1.5),
    ("sse_latency", 1.10),
    ("adaptive_rtt", 1.05),
    ("adaptive_throughput", 1.05),
];

#[cfg(test)]
impl Row {
    pub(crate) fn new(function: &str, value: &str, median_ns: f64, elements: Option<f64>) -> Self {
        Self {
            function: function.into(),
            value: value.into(),
            median_ns,
            bytes: None,
            elements,
        }
    }
}

/// The baseline of `group` ([`BASELINES`]).
pub(crate) fn baseline_of(group: &str) -> Option<&'static str> {
    BASELINES.iter().find(|(g, _)| *g == group).map(|(_, b)| *b)
}

/// One measured benchmark.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) function: String,
    pub(crate) value: String,
    /// Median time per iteration, nanoseconds.
    pub(crate) median_ns: f64,
    /// Bytes per iteration, when the bench declares a throughput in bytes.
    pub(crate) bytes: Option<f64>,
    /// Messages per iteration, when the bench declares a throughput in elements.
    pub(crate) elements: Option<f64>,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let extra_dir = target_dir().join("bench-extra");
    if !args.report_only {
        measure(args, &extra_dir)?;
    }
    report(args.quick, &extra_dir)
}

/// Runs the criterion benches and the load tool, their extra tables saved in `extra_dir`.
fn measure(args: &Args, extra_dir: &Path) -> Result<()> {
    if extra_dir.exists() {
        std::fs::remove_dir_all(extra_dir)
            .with_context(|| format!("clearing {}", extra_dir.display()))?;
    }
    // The benches and the load tool in one build, so that they share one feature set: built on
    // its own (`cargo run --bin`), the load tool leaves out the benches' dev-dependencies, whose
    // features then differ and rebuild most of the dependency graph a second time (~2.5 min).
    let mut build = proc::cargo();
    build.args([
        "build",
        "--profile",
        "bench",
        "-p",
        "transport-benches",
        "--benches",
        "--bins",
    ]);
    proc::run(&mut build, Duration::from_secs(40 * 60)).context("building the benches")?;

    let mut cmd = proc::cargo();
    cmd.args(["bench", "-p", "transport-benches", "--benches", "--"]);
    if args.quick {
        cmd.args(["--warm-up-time", "0.5", "--measurement-time", "1"]);
    }
    cmd.env("TRANSPORT_BENCH_EXTRA", extra_dir);
    proc::run(&mut cmd, Duration::from_secs(40 * 60)).context("cargo bench")?;

    // The bench profile's binary, as built above.
    let exe = target_dir()
        .join("release")
        .join(format!("transport-load{}", std::env::consts::EXE_SUFFIX));
    let mut load = Command::new(&exe);
    load.current_dir(project_root());
    if args.quick {
        load.arg("--quick");
    }
    load.env("TRANSPORT_BENCH_EXTRA", extra_dir);
    proc::run(&mut load, LOAD_TIMEOUT).context("transport-load")?;
    Ok(())
}

/// Writes docs/benchmarks.md and the plots from the results under the target directory.
fn report(quick: bool, extra_dir: &Path) -> Result<()> {
    let groups = read_results(&target_dir().join("criterion"))?;
    if groups.is_empty() {
        bail!("no criterion results under target/criterion");
    }
    let docs = project_root().join("docs");
    let plots = docs.join("bench");
    std::fs::create_dir_all(&plots).context("creating docs/bench")?;
    let extras = read_extra(extra_dir)?;
    let mut md = header(quick);
    md.push_str(&glance::section(
        &glance::Inputs {
            groups: &groups,
            extras: &extras,
        },
        quick,
    ));
    for (group, rows) in &groups {
        let baseline = baseline_of(group);
        let target = TARGETS.iter().find(|(g, _)| g == group).map(|(_, t)| *t);
        md.push_str(&table(group, rows, baseline, target));
        if let Some((_, note)) = NOTES.iter().find(|(g, _)| g == group) {
            let _ = writeln!(md, "\n{note}");
        }
        let svg = plots.join(format!("{group}.svg"));
        plot(group, rows, &svg).with_context(|| format!("plotting {group}"))?;
        let _ = writeln!(md, "\n![{group}](bench/{group}.svg)\n");
    }
    for extra in &extras {
        md.push_str(&extra.markdown());
        md.push('\n');
    }
    let out = docs.join("benchmarks.md");
    // The soak section is written by `cargo xtask soak`; it survives a bench run.
    let previous = std::fs::read_to_string(&out).unwrap_or_default();
    if let Some(soak) = soak::existing_section(&previous) {
        md = soak::replace_section(&md, soak);
    }
    std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} and {}", out.display(), plots.display());
    Ok(())
}

/// A table saved by a bench or the load tool (see `transport_benches::extra`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extra {
    pub(crate) title: String,
    text: String,
    headers: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Extra {
    #[cfg(test)]
    pub(crate) fn new(title: &str, headers: &[&str], rows: Vec<Vec<String>>) -> Self {
        Self {
            title: title.to_owned(),
            text: String::new(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows,
        }
    }

    /// The cell of `row` in the column named `header`.
    pub(crate) fn cell<'a>(&self, row: &'a [String], header: &str) -> Option<&'a str> {
        let column = self.headers.iter().position(|h| h == header)?;
        row.get(column).map(String::as_str)
    }

    fn markdown(&self) -> String {
        let mut md = format!(
            "## {}\n\n{}\n\n| {} |\n|{}\n",
            self.title,
            self.text,
            self.headers.join(" | "),
            "---|".repeat(self.headers.len()),
        );
        for row in &self.rows {
            let _ = writeln!(md, "| {} |", row.join(" | "));
        }
        md
    }
}

/// The tables saved under `dir`, by file name.
fn read_extra(dir: &Path) -> Result<Vec<Extra>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| c.as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        out.push(Extra {
            title: v["title"].as_str().unwrap_or("results").to_owned(),
            text: v["text"].as_str().unwrap_or_default().to_owned(),
            headers: strings(&v["headers"]),
            rows: v["rows"]
                .as_array()
                .map(|rows| rows.iter().map(strings).collect())
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

fn read_results(root: &Path) -> Result<BTreeMap<String, Vec<Row>>> {
    let mut groups: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > 10_000 {
            bail!("too many directories under {}", root.display());
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "new") {
                    if let Some((group, row)) = read_one(&path)? {
                        groups.entry(group).or_default().push(row);
                    }
                } else if path.file_name().is_some_and(|n| n != "report") {
                    stack.push(path);
                }
            }
        }
    }
    for rows in groups.values_mut() {
        rows.sort_by(|a, b| {
            (value_key(&a.value), &a.function).cmp(&(value_key(&b.value), &b.function))
        });
    }
    Ok(groups)
}

fn value_key(value: &str) -> (u64, String) {
    (value.parse().unwrap_or(u64::MAX), value.to_owned())
}

fn read_one(new: &Path) -> Result<Option<(String, Row)>> {
    let read = |name: &str| -> Result<Option<serde_json::Value>> {
        let path = new.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        ))
    };
    let (Some(bench), Some(estimates)) = (read("benchmark.json")?, read("estimates.json")?) else {
        return Ok(None);
    };
    let group = bench["group_id"].as_str().unwrap_or_default().to_owned();
    let function = bench["function_id"].as_str().unwrap_or("-").to_owned();
    let value = bench["value_str"].as_str().unwrap_or("").to_owned();
    let Some(median_ns) = estimates["median"]["point_estimate"].as_f64() else {
        return Ok(None);
    };
    let bytes = bench["throughput"]["Bytes"].as_f64();
    let elements = bench["throughput"]["Elements"].as_f64();
    Ok(Some((
        group,
        Row {
            function,
            value,
            median_ns,
            bytes,
            elements,
        },
    )))
}

fn header(quick: bool) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let rustc = proc::output(
        std::process::Command::new("rustc").arg("--version"),
        Duration::from_secs(30),
    )
    .unwrap_or_default();
    format!(
        "# Benchmarks\n\nGenerated by `cargo xtask bench{}` on {} — {cpu}, {cores} cores, {}.\n\
         Medians of criterion samples; every group ran ours, the bare library it wraps and (where it\n\
         applies) a raw floor in the same run. The machine is shared and noisy: read the ratios,\n\
         not the absolute figures. The `*_paired` tables at the end measured ours and its\n\
         baseline alternately in one loop (a pair sees the same load on both sides): where a\n\
         criterion ratio and a paired one disagree, the paired one is the steadier figure.{}\n\n\
         What the figures mean, where ours falls short and why (profiles): \
         [bench/findings.md](bench/findings.md).\n\n",
        if quick { " --quick" } else { "" },
        proc::utc_now(),
        rustc.trim(),
        if quick {
            " **Quick run: short measurements, for smoke testing only.**"
        } else {
            ""
        },
    )
}

fn fmt_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn table(group: &str, rows: &[Row], baseline: Option<&str>, target: Option<f64>) -> String {
    let mut md = format!(
        "## {group}\n\n| case | implementation | median | throughput | ratio to {} | target |\n|---|---|---:|---:|---:|---|\n",
        baseline.unwrap_or("baseline")
    );
    for row in rows {
        let base = baseline.and_then(|b| {
            rows.iter()
                .find(|r| r.function == b && r.value == row.value)
        });
        let ratio_value = base.map(|b| row.median_ns / b.median_ns);
        let ratio = ratio_value.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}x"));
        let verdict = match (target, ratio_value) {
            (Some(t), Some(r)) if row.function.starts_with("ours") => {
                format!("≤ {t:.2}x: {}", if r <= t { "met" } else { "**missed**" })
            }
            _ => String::new(),
        };
        let thrpt = match (row.bytes, row.elements) {
            (Some(bytes), _) => format!(
                "{:.0} MiB/s",
                bytes / (row.median_ns / 1e9) / (1024.0 * 1024.0)
            ),
            (None, Some(messages)) => format!("{:.0} msg/s", messages / (row.median_ns / 1e9)),
            (None, None) => "—".to_owned(),
        };
        let case = if row.value.is_empty() {
            "-"
        } else {
            row.value.as_str()
        };
        let _ = writeln!(
            md,
            "| {case} | {} | {} | {thrpt} | {ratio} | {verdict} |",
            row.function,
            fmt_time(row.median_ns)
        );
    }
    md
}

/// A grouped bar chart: one cluster per case, one bar per implementation, median time in µs.
fn plot(group: &str, rows: &[Row], path: &Path) -> Result<()> {
    let mut cases: Vec<String> = rows.iter().map(|r| r.value.clone()).collect();
    cases.dedup();
    let mut functions: Vec<String> = rows.iter().map(|r| r.function.clone()).collect();
    functions.sort();
    functions.dedup();
    let max_us = rows
        .iter()
        .map(|r| r.median_ns / 1e3)
        .fold(0.0_f64, f64::max)
        * 1.15;
    let n_cases = u32::try_from(cases.len()).unwrap_or(1).max(1);
    let n_funcs = u32::try_from(functions.len()).unwrap_or(1).max(1);
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{group}: median (µs, lower is better)"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..n_cases * (n_funcs + 1), 0f64..max_us.max(1e-9))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .y_desc("µs")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
    ];
    for (fi, function) in functions.iter().enumerate() {
        let color = palette[fi % palette.len()];
        let fi = u32::try_from(fi).unwrap_or(0);
        let bars = cases.iter().enumerate().filter_map(|(ci, case)| {
            let row = rows
                .iter()
                .find(|r| &r.function == function && &r.value == case)?;
            let x = u32::try_from(ci).unwrap_or(0) * (n_funcs + 1) + fi;
            Some(Rectangle::new(
                [(x, 0.0), (x + 1, row.median_ns / 1e3)],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(function.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    for (ci, case) in cases.iter().enumerate() {
        let x = u32::try_from(ci).unwrap_or(0) * (n_funcs + 1) + n_funcs / 2;
        let counts_messages = rows
            .iter()
            .any(|r| &r.value == case && r.elements.is_some());
        let label = if case.is_empty() {
            group.to_owned()
        } else if case.parse::<u64>().is_err() {
            case.clone()
        } else if counts_messages {
            format!("{case} connections")
        } else {
            format!("{case} B")
        };
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (x, 0.0),
                ("sans-serif", 14),
            )))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(function: &str, value: &str, median_ns: f64, elements: Option<f64>) -> Row {
        Row::new(function, value, median_ns, elements)
    }

    #[test]
    fn table_divides_by_the_baseline_and_judges_our_rows() {
        let rows = [
            row("ours", "32", 105.0, None),
            row("ours-messages", "32", 120.0, None),
            row("quinn", "32", 100.0, None),
            row("wtransport", "32", 200.0, None),
        ];
        let md = table("wt_echo_rtt", &rows, Some("quinn"), Some(1.10));
        assert!(
            md.contains("| 32 | ours | 105 ns | — | 1.05x | ≤ 1.10x: met |"),
            "{md}"
        );
        assert!(
            md.contains("| 32 | ours-messages | 120 ns | — | 1.20x | ≤ 1.10x: **missed** |"),
            "{md}"
        );
        // The baseline and other references get a ratio, no verdict.
        assert!(
            md.contains("| 32 | wtransport | 200 ns | — | 2.00x |  |"),
            "{md}"
        );
    }

    #[test]
    fn element_throughput_is_messages_per_second() {
        let rows = [
            row("ours", "100", 10e6, Some(10_000.0)),
            row("tokio-tungstenite", "100", 20e6, Some(10_000.0)),
        ];
        let md = table("ws_throughput", &rows, Some("tokio-tungstenite"), Some(1.0));
        assert!(md.contains("1000000 msg/s"), "{md}");
        assert!(md.contains("500000 msg/s"), "{md}");
        assert!(md.contains("0.50x | ≤ 1.00x: met"), "{md}");
    }

    #[test]
    fn extra_tables_become_markdown_in_file_order() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-extra-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let section = |title: &str| {
            serde_json::json!({
                "title": title,
                "text": "what was measured",
                "headers": ["a", "b"],
                "rows": [["1", "2"], ["3", "4"]],
            })
            .to_string()
        };
        std::fs::write(dir.join("b_second.json"), section("b_second")).expect("write");
        std::fs::write(dir.join("a_first.json"), section("a_first")).expect("write");
        std::fs::write(dir.join("ignored.txt"), "not json").expect("write");
        let extras = read_extra(&dir).expect("readable");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(extras.len(), 2);
        let sections: Vec<String> = extras.iter().map(Extra::markdown).collect();
        assert!(sections[0].starts_with("## a_first\n\nwhat was measured\n\n"));
        assert!(sections[0].contains("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n"));
        assert!(sections[1].starts_with("## b_second"));
        assert_eq!(extras[0].cell(&extras[0].rows[1], "b"), Some("4"));
        assert_eq!(extras[0].cell(&extras[0].rows[1], "c"), None);
        // A missing directory means no extra results, not an error.
        assert!(read_extra(&dir).expect("no dir").is_empty());
    }
}
