//! `cargo xtask bench [--quick]`: runs the criterion benches of `benches/`, then writes
//! `docs/benchmarks.md` (medians and ratios against the bare library of each group, the
//! machine it ran on) and one SVG bar chart per group under `docs/bench/`.
//!
//! Each criterion group holds, in one run, our implementation, the bare library it wraps and
//! (where it applies) a raw floor; the ratio column divides by the group's baseline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

use crate::proc::{self, project_root, target_dir};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Short warm-up and measurement (about a minute in all): for CI smoke runs.
    #[arg(long)]
    pub(crate) quick: bool,
}

/// The baseline of each group: the bare library ours wraps.
const BASELINES: &[(&str, &str)] = &[
    ("ws_echo_rtt", "tokio-tungstenite"),
    ("sse_parser", "eventsource-stream"),
];

/// One measured benchmark.
#[derive(Debug, Clone)]
struct Row {
    function: String,
    value: String,
    /// Median time per iteration, nanoseconds.
    median_ns: f64,
    /// Bytes per iteration, when the bench declares a throughput.
    bytes: Option<f64>,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let mut cmd = proc::cargo();
    cmd.args(["bench", "-p", "transport-benches", "--benches", "--"]);
    if args.quick {
        cmd.args(["--warm-up-time", "0.5", "--measurement-time", "1"]);
    }
    eprintln!("$ {}", proc::display(&cmd));
    proc::run(&mut cmd, Duration::from_secs(40 * 60)).context("cargo bench")?;

    let groups = read_results(&target_dir().join("criterion"))?;
    if groups.is_empty() {
        bail!("no criterion results under target/criterion");
    }
    let docs = project_root().join("docs");
    let plots = docs.join("bench");
    std::fs::create_dir_all(&plots).context("creating docs/bench")?;
    let mut md = header(args.quick);
    for (group, rows) in &groups {
        let baseline = BASELINES.iter().find(|(g, _)| g == group).map(|(_, b)| *b);
        md.push_str(&table(group, rows, baseline));
        let svg = plots.join(format!("{group}.svg"));
        plot(group, rows, &svg).with_context(|| format!("plotting {group}"))?;
        let _ = writeln!(md, "\n![{group}](bench/{group}.svg)\n");
    }
    let out = docs.join("benchmarks.md");
    std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} and {}", out.display(), plots.display());
    Ok(())
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
    Ok(Some((
        group,
        Row {
            function,
            value,
            median_ns,
            bytes,
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
         not the absolute figures.{}\n\n",
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

fn table(group: &str, rows: &[Row], baseline: Option<&str>) -> String {
    let mut md = format!(
        "## {group}\n\n| case | implementation | median | throughput | ratio to {} |\n|---|---|---:|---:|---:|\n",
        baseline.unwrap_or("baseline")
    );
    for row in rows {
        let base = baseline.and_then(|b| {
            rows.iter()
                .find(|r| r.function == b && r.value == row.value)
        });
        let ratio = base.map_or_else(
            || "—".to_owned(),
            |b| format!("{:.2}x", row.median_ns / b.median_ns),
        );
        let thrpt = row.bytes.map_or_else(
            || "—".to_owned(),
            |bytes| {
                format!(
                    "{:.0} MiB/s",
                    bytes / (row.median_ns / 1e9) / (1024.0 * 1024.0)
                )
            },
        );
        let case = if row.value.is_empty() {
            "-"
        } else {
            row.value.as_str()
        };
        let _ = writeln!(
            md,
            "| {case} | {} | {} | {thrpt} | {ratio} |",
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
        let label = if case.is_empty() {
            group.to_owned()
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
