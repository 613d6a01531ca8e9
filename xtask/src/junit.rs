//! Reads the JUnit report nextest writes (`.config/nextest.toml`, profile `ci`) to name the
//! tests that failed or passed only on a retry: CI keeps only the tail of the log, so the
//! summary's last lines must say which tests they were.

use std::path::{Path, PathBuf};

/// Tests named in a JUnit report, as `binary::test`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// Failed on every try: the test's name and the first failure's message (its panic's
    /// first line, or nextest's reason such as a timeout), if the report has one.
    pub(crate) failed: Vec<(String, Option<String>)>,
    /// Failed, then passed on a retry.
    pub(crate) flaky: Vec<String>,
}

/// Where nextest's `ci` profile writes its report.
pub(crate) fn path() -> PathBuf {
    crate::proc::target_dir()
        .join("nextest")
        .join("ci")
        .join("junit.xml")
}

/// The report at `path`, or `None` if it cannot be read.
pub(crate) fn read(path: &Path) -> Option<Report> {
    std::fs::read_to_string(path).ok().map(|xml| parse(&xml))
}

/// Scans the `<testcase>` elements; a case with a `<failure` or `<error` child failed, one
/// with only `<flakyFailure` / `<flakyError` children passed on a retry. nextest writes this
/// flat shape; a full XML parser would add a dependency for no gain.
pub(crate) fn parse(xml: &str) -> Report {
    let mut report = Report::default();
    for chunk in xml.split("<testcase ").skip(1) {
        let Some(head_end) = chunk.find('>') else {
            continue;
        };
        let head = &chunk[..head_end];
        let body = if head.ends_with('/') {
            ""
        } else {
            chunk[head_end..]
                .split("</testcase>")
                .next()
                .unwrap_or_default()
        };
        let name = match (attribute(head, "classname"), attribute(head, "name")) {
            (Some(class), Some(name)) => format!("{class}::{name}"),
            (None, Some(name)) => name,
            _ => continue,
        };
        let failure_at = ["<failure", "<error"]
            .iter()
            .filter_map(|tag| body.find(tag))
            .min();
        if let Some(at) = failure_at {
            report.failed.push((name, failure_text(&body[at..])));
        } else if body.contains("<flakyFailure") || body.contains("<flakyError") {
            report.flaky.push(name);
        }
    }
    report
}

/// What a `<failure ...>text</failure>` element says, shortened to one line: the text's first
/// two lines (a panic's location and its message), else the `message` attribute.
fn failure_text(element: &str) -> Option<String> {
    const MAX_CHARS: usize = 400;
    let (tag, rest) = element.split_once('>')?;
    let text = rest.split("</").next().unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take(2)
        .collect();
    let line = if lines.is_empty() {
        attribute(tag, "message")?
    } else {
        unescape(&lines.join(" "))
    };
    Some(line.chars().take(MAX_CHARS).collect())
}

/// The value of `key="..."` in an element's opening tag, with XML's five entities decoded.
fn attribute(head: &str, key: &str) -> Option<String> {
    let needle = format!(" {key}=\"");
    let start = format!(" {head}").find(&needle)? + needle.len() - 1;
    let rest = head.get(start..)?;
    Some(unescape(&rest[..rest.find('"')?]))
}

/// XML's five predefined entities, decoded.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" failures="1" errors="0">
    <testsuite name="transport-ws::abuse" tests="3" disabled="0" errors="0" failures="1">
        <testcase name="flood_leaves_others_served" classname="transport-ws::abuse" time="1.2">
            <failure message="thread &apos;t&apos; panicked at a.rs:1:2" type="test failure">thread &apos;t&apos; panicked at a.rs:1:2:
p95 63.8 ms &gt; 50 ms
stack backtrace:</failure>
            <rerunFailure type="test failure">again</rerunFailure>
            <system-out>out</system-out>
        </testcase>
        <testcase name="passes" classname="transport-ws::abuse" time="0.1">
        </testcase>
        <testcase name="retried" classname="transport-ws::abuse" time="0.3">
            <flakyFailure type="test failure">first try</flakyFailure>
        </testcase>
        <testcase name="empty" classname="transport-ws::abuse" time="0.0"/>
    </testsuite>
    <testsuite name="transport-sse" tests="1" disabled="0" errors="0" failures="0">
        <testcase name="parser::a&lt;b&gt;" classname="transport-sse" time="0.0">
            <error message="test timed out" type="timeout"></error>
        </testcase>
    </testsuite>
</testsuites>"#;

    #[test]
    fn names_failed_and_flaky_tests() {
        assert_eq!(
            parse(SAMPLE),
            Report {
                failed: vec![
                    (
                        "transport-ws::abuse::flood_leaves_others_served".to_owned(),
                        Some("thread 't' panicked at a.rs:1:2: p95 63.8 ms > 50 ms".to_owned())
                    ),
                    (
                        "transport-sse::parser::a<b>".to_owned(),
                        Some("test timed out".to_owned())
                    ),
                ],
                flaky: vec!["transport-ws::abuse::retried".to_owned()],
            }
        );
    }

    #[test]
    fn name_is_not_taken_from_classname() {
        assert_eq!(
            attribute(r#"name="x" classname="c""#, "name").as_deref(),
            Some("x")
        );
        assert_eq!(
            attribute(r#"classname="c" name="x""#, "name").as_deref(),
            Some("x")
        );
    }

    #[test]
    fn garbage_gives_an_empty_report() {
        assert_eq!(parse("<testcase name=\"unterminated"), Report::default());
        assert_eq!(parse(""), Report::default());
    }
}
