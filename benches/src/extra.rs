//! Results measured outside criterion (datagram loss, connection counts, memory per
//! connection): each a small table that `cargo xtask bench` adds to `docs/benchmarks.md`.
//!
//! A bench or the load tool calls [`write`]: the table is printed, and saved as
//! `$TRANSPORT_BENCH_EXTRA/<title>.json` when that variable names a directory (xtask sets it).

use std::path::PathBuf;

/// One table of results.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// The heading, also the file name (`[a-z0-9_]`).
    pub title: String,
    /// A paragraph on what was measured and how.
    pub text: String,
    /// Column names.
    pub headers: Vec<String>,
    /// Cells, one vector per row, as many as `headers`.
    pub rows: Vec<Vec<String>>,
}

impl Section {
    /// The section as Markdown: heading, text, table.
    pub fn markdown(&self) -> String {
        let mut md = format!("## {}\n\n{}\n\n", self.title, self.text);
        md += &["| ", &self.headers.join(" | "), " |\n"].concat();
        md += &["|", &"---|".repeat(self.headers.len()), "\n"].concat();
        for row in &self.rows {
            md += &["| ", &row.join(" | "), " |\n"].concat();
        }
        md
    }

    /// The section as JSON (`title`, `text`, `headers`, `rows`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "title": self.title,
            "text": self.text,
            "headers": self.headers,
            "rows": self.rows,
        })
    }
}

/// The directory named by `TRANSPORT_BENCH_EXTRA`, if set.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os("TRANSPORT_BENCH_EXTRA").map(PathBuf::from)
}

/// Prints `section` and saves it under [`dir`] when set.
///
/// # Panics
/// When the file cannot be written (benchmarks only).
pub fn write(section: &Section) {
    println!("\n{}", section.markdown());
    if let Some(dir) = dir() {
        std::fs::create_dir_all(&dir).expect("creating the extra results directory");
        let path = dir.join(format!("{}.json", section.title));
        let text = serde_json::to_string_pretty(&section.to_json()).expect("json");
        std::fs::write(&path, text).expect("writing extra results");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_and_json_carry_the_same_table() {
        let section = Section {
            title: "t".into(),
            text: "what".into(),
            headers: vec!["a".into(), "b".into()],
            rows: vec![vec!["1".into(), "2".into()]],
        };
        assert_eq!(
            section.markdown(),
            "## t\n\nwhat\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
        );
        let json = section.to_json();
        assert_eq!(json["rows"][0][1], "2");
        assert_eq!(json["headers"][0], "a");
    }
}
