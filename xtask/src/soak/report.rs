//! What `cargo xtask soak` prints and writes: the verdict, the series on failure, and for a
//! full run docs/bench/soak.csv, one SVG per transport and the soak section of
//! docs/benchmarks.md.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use plotters::prelude::*;

use super::{Outcome, Plan, Resources, Row};
use crate::proc;

/// The soak section of docs/benchmarks.md lies between these lines; `cargo xtask bench`
/// keeps it.
pub(crate) const BEGIN: &str = "<!-- soak:begin -->";
pub(crate) const END: &str = "<!-- soak:end -->";

pub(crate) fn show(r: &Row) -> String {
    format!(
        "t={:.1}s {} cycles={} messages={} server: rss={}KiB fds={} tasks={} connections={}; \
         client: rss={}KiB fds={} tasks={}",
        r.at.as_secs_f64(),
        r.phase,
        r.cycles,
        r.messages,
        r.server.rss_kib,
        r.server.fds,
        r.server.tasks,
        r.connections,
        r.client.rss_kib,
        r.client.fds,
        r.client.tasks
    )
}

pub(crate) fn print_verdict(o: &Outcome) {
    let verdict = if o.problems.is_empty() {
        "passed".to_owned()
    } else {
        format!("FAILED: {}", o.problems.join("; "))
    };
    println!(
        "soak {}: {} cycles, {} messages (after warm-up) in {:.1?}: {verdict}",
        o.proto.title(),
        o.cycles,
        o.messages,
        o.elapsed
    );
}

pub(crate) fn print_series(o: &Outcome) {
    println!(
        "series of {} (time, phase, counts, server, client):",
        o.proto.title()
    );
    for r in &o.series {
        println!("  {}", show(r));
    }
}

fn csv(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "transport,seconds,phase,cycles,messages,server_rss_kib,server_fds,server_tasks,\
         server_connections,client_rss_kib,client_fds,client_tasks\n",
    );
    for o in outcomes {
        for r in &o.series {
            let _ = writeln!(
                out,
                "{},{:.1},{},{},{},{},{},{},{},{},{},{}",
                o.proto.name(),
                r.at.as_secs_f64(),
                r.phase,
                r.cycles,
                r.messages,
                r.server.rss_kib,
                r.server.fds,
                r.server.tasks,
                r.connections,
                r.client.rss_kib,
                r.client.fds,
                r.client.tasks
            );
        }
    }
    out
}

/// Writes docs/bench/soak.csv, docs/bench/soak-PROTO.svg and the soak section of
/// docs/benchmarks.md.
pub(crate) fn write_docs(
    outcomes: &[Outcome],
    stress: Option<bool>,
    plan: &Plan,
    elapsed: Duration,
) -> Result<()> {
    let docs = proc::project_root().join("docs");
    let dir = docs.join("bench");
    std::fs::create_dir_all(&dir).context("creating docs/bench")?;
    let csv_path = dir.join("soak.csv");
    std::fs::write(&csv_path, csv(outcomes))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    for o in outcomes {
        let svg = dir.join(format!("soak-{}.svg", o.proto.name()));
        plot(o, &svg).with_context(|| format!("plotting {}", svg.display()))?;
    }
    let section = section(outcomes, stress, plan, elapsed);
    let md_path = docs.join("benchmarks.md");
    let current = std::fs::read_to_string(&md_path).unwrap_or_default();
    std::fs::write(&md_path, replace_section(&current, &section))
        .with_context(|| format!("writing {}", md_path.display()))?;
    eprintln!(
        "wrote {}, {} and the soak section of {}",
        csv_path.display(),
        dir.join("soak-*.svg").display(),
        md_path.display()
    );
    Ok(())
}

/// `text` with the soak section (markers included) replaced by `section`, or appended.
pub(crate) fn replace_section(text: &str, section: &str) -> String {
    if let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END))
        && begin < end
    {
        let mut out = text[..begin].to_owned();
        out.push_str(section);
        out.push_str(&text[end + END.len()..]);
        return out;
    }
    let mut out = text.trim_end().to_owned();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(section);
    out.push('\n');
    out
}

/// The soak section of `text`, markers included, if it has one.
pub(crate) fn existing_section(text: &str) -> Option<&str> {
    let begin = text.find(BEGIN)?;
    let end = text.find(END)?;
    (begin < end).then(|| &text[begin..end + END.len()])
}

fn mib(kib: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let mib = kib as f64 / 1024.0;
    format!("{mib:.1} MiB")
}

fn resources(r: &Resources) -> String {
    format!("{}, {} fds, {} tasks", mib(r.rss_kib), r.fds, r.tasks)
}

fn section(outcomes: &[Outcome], stress: Option<bool>, plan: &Plan, elapsed: Duration) -> String {
    let mut md = format!(
        "{BEGIN}\n## Soak: leaks under connect/close cycles and echoed messages\n\n\
         `cargo xtask soak` ({}, release builds, {} s allowed per phase). Per transport: \
         `tcat serve` in its own process and `soak-client` (test-servers) in another; a \
         warm-up of {} % of the counts, then {} connect/close cycles (48 at a time; a third \
         each clean closes after an echoed message, abrupt drops after an echoed message, \
         failed handshakes) and {} echoed messages (4 connections, 256 in flight on each, \
         every echo checked). Baseline once idle after the warm-up; at the end, once idle \
         again, descriptors and tasks must equal it and resident memory stay within 5 %, on \
         both sides. The SSE server runs with `--session-grace 0.2` (abandoned sessions end \
         after 0.2 s instead of 30 s) and both processes with `GLIBC_TUNABLES={}` (a fixed \
         mmap threshold: without it freed large buffers stay in the heap and resident memory \
         shows the high-water mark; the WebTransport client, 48 sessions at a time with a \
         quinn endpoint each, then stays near 450 MiB once they are all gone). Whole run: \
         {:.1} min. Data: [bench/soak.csv](bench/soak.csv).\n\n\
         | transport | result | cycles | cycles/s | messages | messages/s | server baseline | server end | client baseline | client end |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        proc::utc_now(),
        plan.seconds,
        plan.warm_up_percent,
        plan.cycles,
        plan.messages,
        super::GLIBC_TUNABLES,
        elapsed.as_secs_f64() / 60.0,
    );
    for o in outcomes {
        let result = if o.problems.is_empty() {
            "pass".to_owned()
        } else {
            format!("FAIL: {}", o.problems.join("; "))
        };
        let secs = |key: &str| {
            o.durations
                .iter()
                .find(|(k, _)| k == key)
                .map_or(0.0, |(_, s)| *s)
        };
        #[allow(clippy::cast_precision_loss)] // display only
        let rate = |count: u64, secs: f64| {
            if secs > 0.0 {
                format!("{:.0}", count as f64 / secs)
            } else {
                "-".to_owned()
            }
        };
        let side = |row: &Option<Row>, server: bool| {
            row.as_ref().map_or_else(
                || "-".to_owned(),
                |r| resources(if server { &r.server } else { &r.client }),
            )
        };
        let _ = writeln!(
            md,
            "| {} | {result} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.proto.title(),
            o.cycles,
            rate(o.cycles, secs("run cycle_secs")),
            o.messages,
            rate(o.messages, secs("run message_secs")),
            side(&o.baseline, true),
            side(&o.end, true),
            side(&o.baseline, false),
            side(&o.end, false),
        );
    }
    let stress_line = match stress {
        Some(true) => "passed",
        Some(false) => "FAILED (see the run's output)",
        None => "not run",
    };
    let _ = writeln!(
        md,
        "\nThe `#[ignore]`d stress tests (`stress_*`: a 5,000-connection burst and a million tiny \
         messages on WebSocket, 20,000 POSTs on SSE), run by the same command: {stress_line}.\n"
    );
    for o in outcomes {
        let _ = writeln!(
            md,
            "![soak {0}](bench/soak-{1}.svg)\n",
            o.proto.title(),
            o.proto.name()
        );
    }
    md.push_str(END);
    md
}

/// One plotted quantity of a process.
type Metric = fn(&Resources) -> f64;

/// Three stacked charts (resident MiB, descriptors, tasks) over time, server and client.
fn plot(o: &Outcome, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (760, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let root = root
        .titled(
            &format!(
                "soak {}: server (blue) and client (orange) over time",
                o.proto.title()
            ),
            ("sans-serif", 18),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let panels = root.split_evenly((3, 1));
    let end_s = o.series.last().map_or(1.0, |r| r.at.as_secs_f64()).max(1.0);
    #[allow(clippy::cast_precision_loss)] // display only
    let metrics: [(&str, Metric); 3] = [
        ("resident MiB", |r| r.rss_kib as f64 / 1024.0),
        ("open descriptors", |r| r.fds as f64),
        ("live tasks", |r| r.tasks as f64),
    ];
    let server_color = RGBColor(31, 119, 180);
    let client_color = RGBColor(255, 127, 14);
    for (panel, (label, value)) in panels.iter().zip(metrics) {
        let max = o
            .series
            .iter()
            .flat_map(|r| [value(&r.server), value(&r.client)])
            .fold(0.0_f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..end_s, 0f64..max.max(1.0))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(label)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (server, color) in [(true, server_color), (false, client_color)] {
            let points: Vec<(f64, f64)> = o
                .series
                .iter()
                .map(|r| {
                    let res = if server { &r.server } else { &r.client };
                    (r.at.as_secs_f64(), value(res))
                })
                .collect();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    points,
                    color.stroke_width(2),
                )))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        // The baseline and the end: where the comparison is made.
        let marks = o
            .series
            .iter()
            .filter(|r| r.phase == "baseline" || r.phase == "end")
            .map(|r| {
                let x = r.at.as_secs_f64();
                PathElement::new(vec![(x, 0.0), (x, max.max(1.0))], BLACK.mix(0.4))
            });
        chart
            .draw_series(marks)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_in_place_or_appended() {
        let section = format!("{BEGIN}\nnew\n{END}");
        let text = format!("# Benchmarks\n\nbefore\n\n{BEGIN}\nold\n{END}\n\nafter\n");
        let out = replace_section(&text, &section);
        assert_eq!(
            out,
            format!("# Benchmarks\n\nbefore\n\n{section}\n\nafter\n")
        );
        assert_eq!(existing_section(&out), Some(section.as_str()));
        let appended = replace_section("# Benchmarks\n", &section);
        assert_eq!(appended, format!("# Benchmarks\n\n{section}\n"));
        assert_eq!(existing_section("no markers"), None);
    }
}
