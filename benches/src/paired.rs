//! Paired runs: ours and its baseline measured alternately in one loop.
//!
//! Criterion measures one implementation after the other; on a shared machine the load changes
//! between them and moves their ratio by more than the 5–10 % the targets of issue #6 ask
//! about. A pair (one iteration of ours, one of the baseline, which goes first alternating)
//! sees the same load on both sides, so the median of the per-pair ratios is the steadier
//! figure. A bench calls [`Table::run`] before its criterion group: the result is printed, and
//! every row measured so far is written as one table of `docs/benchmarks.md` (see
//! [`crate::extra`]), with a verdict against the table's target.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::extra::{self, Section};

/// One table of paired results: what it compares, and the largest ratio (ours / baseline, in
/// time) that meets the target.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Heading and file name (`[a-z0-9_]`), e.g. `ws_paired`.
    pub title: &'static str,
    /// What one iteration is, for the paragraph above the table.
    pub text: &'static str,
    /// Name of our implementation's column.
    pub ours: &'static str,
    /// Name of the baseline's column.
    pub baseline: &'static str,
}

/// The figures of one paired run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Median time of ours.
    pub ours: Duration,
    /// Median time of the baseline.
    pub baseline: Duration,
    /// Median of the per-pair ratios ours / baseline: the figure judged.
    pub ratio: f64,
}

/// Rows of every table written so far in this process, by title.
static ROWS: Mutex<BTreeMap<&'static str, Vec<Vec<String>>>> = Mutex::new(BTreeMap::new());

/// The median of `values` (the upper one of an even count); 0 when empty.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `ours` and `baseline` alternately `pairs` times (which goes first alternates too);
/// each returns the time of one iteration.
pub fn measure(
    pairs: usize,
    mut ours: impl FnMut() -> Duration,
    mut baseline: impl FnMut() -> Duration,
) -> Paired {
    let mut times_ours = Vec::with_capacity(pairs);
    let mut times_base = Vec::with_capacity(pairs);
    let mut ratios = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let (a, b) = if i % 2 == 0 {
            let a = ours();
            (a, baseline())
        } else {
            let b = baseline();
            (ours(), b)
        };
        let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
        times_ours.push(a);
        times_base.push(b);
        if b > 0.0 {
            ratios.push(a / b);
        }
    }
    Paired {
        ours: Duration::from_secs_f64(median(&mut times_ours)),
        baseline: Duration::from_secs_f64(median(&mut times_base)),
        ratio: median(&mut ratios),
    }
}

/// A duration for a table cell: µs below 10 ms, ms above.
fn cell(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10_000.0 {
        format!("{us:.2} µs")
    } else {
        format!("{:.3} ms", us / 1e3)
    }
}

impl Table {
    /// Measures `pairs` pairs (see [`measure`]) for the row `case`, prints the result and
    /// writes the table with every row so far, judged against `target` (the largest ratio of
    /// times that meets it).
    pub fn run(
        &self,
        case: &str,
        target: f64,
        pairs: usize,
        ours: impl FnMut() -> Duration,
        baseline: impl FnMut() -> Duration,
    ) -> Paired {
        let paired = measure(pairs, ours, baseline);
        let of_medians = paired.ours.as_secs_f64() / paired.baseline.as_secs_f64().max(1e-12);
        println!(
            "{}/{case}: {} median {}, {} median {}, ratio of medians {of_medians:.3}, \
             median of pair ratios {:.3} ({pairs} pairs)",
            self.title,
            self.ours,
            cell(paired.ours),
            self.baseline,
            cell(paired.baseline),
            paired.ratio,
        );
        let verdict = if paired.ratio <= target {
            "met"
        } else {
            "**missed**"
        };
        let row = vec![
            case.to_owned(),
            cell(paired.ours),
            cell(paired.baseline),
            format!("{of_medians:.3}x"),
            format!("{:.3}x", paired.ratio),
            pairs.to_string(),
            format!("≤ {target:.2}x: {verdict}"),
        ];
        let rows = {
            let mut all = ROWS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let rows = all.entry(self.title).or_default();
            rows.push(row);
            rows.clone()
        };
        extra::write(&Section {
            title: self.title.into(),
            text: format!(
                "{} Measured alternately in one loop before the criterion groups (which \
                 goes first alternates): a pair sees the same load on both sides, so the \
                 median of the per-pair ratios (ours / baseline, in time) is the figure judged \
                 against the target; criterion's groups run one after the other, and a change \
                 of load between them moves their ratio.",
                self.text
            ),
            headers: [
                "case",
                &format!("{} median", self.ours),
                &format!("{} median", self.baseline),
                "ratio of medians",
                "median of pair ratios",
                "pairs",
                "target",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        });
        paired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_the_median_of_the_pairs_not_of_the_medians() {
        // Ours takes 3, 3, 3, 30 (one slow outlier); the baseline 2, 2, 20, 2: each pair's
        // ratio is 1.5 except the two with an outlier (0.15 and 15).
        let mut ours = [3u64, 3, 3, 30].into_iter();
        let mut base = [2u64, 2, 20, 2].into_iter();
        let paired = measure(
            4,
            || Duration::from_millis(ours.next().expect("four")),
            || Duration::from_millis(base.next().expect("four")),
        );
        assert_eq!(paired.ours, Duration::from_millis(3));
        assert_eq!(paired.baseline, Duration::from_millis(2));
        assert!((paired.ratio - 1.5).abs() < 1e-9, "{}", paired.ratio);
    }

    #[test]
    fn which_goes_first_alternates() {
        let order = std::cell::RefCell::new(Vec::new());
        measure(
            4,
            || {
                order.borrow_mut().push('o');
                Duration::from_millis(1)
            },
            || {
                order.borrow_mut().push('b');
                Duration::from_millis(1)
            },
        );
        assert_eq!(order.into_inner(), ['o', 'b', 'b', 'o', 'o', 'b', 'b', 'o']);
    }

    #[test]
    fn cells_switch_to_milliseconds_above_ten() {
        assert_eq!(cell(Duration::from_micros(1500)), "1500.00 µs");
        assert_eq!(cell(Duration::from_micros(12_345)), "12.345 ms");
    }
}
