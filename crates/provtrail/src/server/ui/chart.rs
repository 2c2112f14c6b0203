//! The failure-rate chart: inline SVG drawn on the server, one line per source over time, with
//! axes, a legend and a text alternative. No script and no library: the page is complete as sent.

use maud::{Markup, html};

use super::layout::{percent, shorten};
use crate::store::{Bucket, Stats};

/// Sources drawn as lines; the rest are in the table below the chart.
pub const MAX_LINES: usize = 8;

// Colour-blind-safe colours (Okabe–Ito, with two darker additions), and dash patterns so that
// colour is not the only way to tell lines apart.
const COLOURS: [&str; MAX_LINES] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#b8860b", "#56b4e9", "#7f3c8d", "#8c8c8c",
];
const DASHES: [&str; 4] = ["none", "7 4", "2 4", "10 4 2 4"];

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 36.0;

/// Points drawn as dots with their own tooltip when a series has at most this many buckets.
const MAX_DOTS: usize = 96;

/// One line: a source's failure rate per bucket (`None` where it had no account requests).
#[derive(Debug, Clone)]
pub struct Line {
    /// Source name.
    pub source: String,
    /// Failure rate per bucket.
    pub rates: Vec<Option<f64>>,
    /// Failure rate over the whole range.
    pub overall: f64,
}

/// The lines of the sources with the most failures (at most [`MAX_LINES`]).
pub fn lines(stats: &Stats) -> Vec<Line> {
    stats
        .sources
        .iter()
        .filter(|source| source.requests.total() > 0)
        .take(MAX_LINES)
        .map(|source| Line {
            source: source.source.clone(),
            overall: source.failure_rate,
            rates: stats
                .series
                .iter()
                .map(|bucket| {
                    bucket
                        .sources
                        .iter()
                        .find(|s| s.source == source.source)
                        .filter(|s| s.requests.total() > 0)
                        .map(|s| s.failure_rate)
                })
                .collect(),
        })
        .collect()
}

/// The top of the y axis: the smallest of a few round rates that is above every point.
fn y_max(lines: &[Line]) -> f64 {
    let highest = lines
        .iter()
        .flat_map(|line| line.rates.iter().flatten())
        .fold(0.0_f64, |a, &b| a.max(b));
    [0.05, 0.1, 0.2, 0.25, 0.5, 1.0]
        .into_iter()
        .find(|top| highest <= *top)
        .unwrap_or(1.0)
}

/// A y-axis label: `25 %`, `2.5 %`, `1.25 %`: exact for the quarters of every scale's top
/// (rounded to one decimal, the ticks of a 5 % scale read 1.2 % and 3.8 %).
fn tick(rate: f64) -> String {
    let percent = format!("{:.2}", rate * 100.0);
    let percent = percent.trim_end_matches('0').trim_end_matches('.');
    format!("{percent} %")
}

fn label(start: i64, bucket: Bucket) -> String {
    let at = chrono::DateTime::from_timestamp_millis(start).unwrap_or_default();
    match bucket {
        Bucket::Hour => at.format("%m-%d %H:00").to_string(),
        Bucket::Day => at.format("%m-%d").to_string(),
    }
}

/// The chart, its legend and a data table for screen readers and copying.
pub fn render(stats: &Stats, lines: &[Line], caption: &str) -> Markup {
    let starts: Vec<i64> = stats.series.iter().map(|bucket| bucket.start).collect();
    let n = starts.len();
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let top = y_max(lines);
    let x = |i: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |rate: f64| TOP + plot_h * (1.0 - (rate / top).clamp(0.0, 1.0));
    let x_ticks: Vec<usize> = if n == 0 {
        Vec::new()
    } else {
        let step = n.div_ceil(6).max(1);
        (0..n).step_by(step).collect()
    };
    let description = if lines.is_empty() {
        "No account requests in this range.".to_owned()
    } else {
        let worst: Vec<String> = lines
            .iter()
            .take(3)
            .map(|line| {
                format!(
                    "{} ({} failed)",
                    shorten(&line.source, 80),
                    percent(line.overall)
                )
            })
            .collect();
        format!(
            "Failure rate of account requests per {} for {} sources. Most failures: {}.",
            match stats.bucket {
                Bucket::Hour => "hour",
                Bucket::Day => "day",
            },
            lines.len(),
            worst.join(", ")
        )
    };
    html! {
        // On a narrow screen the chart scrolls sideways, and the script starts it at its newest
        // end; the legend below it stays in view.
        figure.chart {
            div.chart-scroll data-scroll-to-end {
                svg #failure-chart viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img"
                    aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet" {
                    title #chart-title { (caption) }
                    desc #chart-desc { (description) }
                    g.grid {
                        @for step in 0..=4 {
                            @let rate = top * f64::from(step) / 4.0;
                            line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(rate)) y2=(y(rate)) {}
                            text.axis x=(LEFT - 6.0) y=(y(rate) + 4.0) text-anchor="end" { (tick(rate)) }
                        }
                    }
                    g.x-axis {
                        line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(TOP + plot_h) y2=(TOP + plot_h) {}
                        @for i in &x_ticks {
                            line x1=(x(*i)) x2=(x(*i)) y1=(TOP + plot_h) y2=(TOP + plot_h + 4.0) {}
                            text.axis x=(x(*i)) y=(HEIGHT - BOTTOM + 20.0) text-anchor="middle" { (label(starts[*i], stats.bucket)) }
                        }
                    }
                    @for (index, line) in lines.iter().enumerate() {
                        g.series data-source=(line.source) {
                            path d=(path_data(&line.rates, &x, &y)) fill="none"
                                stroke=(COLOURS[index % COLOURS.len()])
                                stroke-dasharray=(DASHES[index % DASHES.len()])
                                stroke-width="2.5" stroke-linejoin="round" stroke-linecap="round" {
                                title { (shorten(&line.source, 80)) ": " (percent(line.overall)) " failed overall" }
                            }
                            @if n <= MAX_DOTS {
                                @for (i, rate) in line.rates.iter().enumerate() {
                                    @if let Some(rate) = rate {
                                        circle cx=(x(i)) cy=(y(*rate)) r="3" fill=(COLOURS[index % COLOURS.len()]) {
                                            title { (shorten(&line.source, 80)) ", " (label(starts[i], stats.bucket)) ": " (percent(*rate)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            figcaption {
                @if lines.is_empty() {
                    p.muted { "No account requests in this range." }
                } @else {
                    ul.legend aria-label="Legend" {
                        @for (index, line) in lines.iter().enumerate() {
                            li {
                                svg.swatch width="28" height="10" aria-hidden="true" {
                                    line x1="2" x2="26" y1="5" y2="5" stroke=(COLOURS[index % COLOURS.len()])
                                        stroke-dasharray=(DASHES[index % DASHES.len()]) stroke-width="3" {}
                                }
                                (shorten(&line.source, 80)) " " span.muted { (percent(line.overall)) }
                            }
                        }
                    }
                }
            }
        }
        @if !lines.is_empty() {
            details.chart-data {
                summary { "Chart data as a table" }
                div.table-wrap tabindex="0" role="region" aria-label="Chart data" {
                    table {
                        thead { tr { th scope="col" { "Bucket (UTC)" } @for line in lines { th scope="col" { (shorten(&line.source, 80)) } } } }
                        tbody {
                            @for (i, start) in starts.iter().enumerate() {
                                tr {
                                    th scope="row" { (label(*start, stats.bucket)) }
                                    @for line in lines {
                                        td.num { @match line.rates[i] { Some(rate) => { (percent(rate)) } None => { "—" } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// SVG path data for one line: a gap wherever a bucket has no value, and a dot (a zero-length
/// segment with round caps) for a value with no neighbour.
fn path_data(rates: &[Option<f64>], x: &impl Fn(usize) -> f64, y: &impl Fn(f64) -> f64) -> String {
    let mut data = String::new();
    let mut drawing = false;
    for (i, rate) in rates.iter().enumerate() {
        match rate {
            Some(rate) => {
                let command = if drawing { 'L' } else { 'M' };
                data.push_str(&format!("{command}{:.1},{:.1}", x(i), y(*rate)));
                let next_missing = rates.get(i + 1).is_none_or(Option::is_none);
                if !drawing && next_missing {
                    data.push_str("h0");
                }
                drawing = true;
            }
            None => drawing = false,
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BucketStats, RequestCounts, SourceStats};

    fn counts(success: u64, failed: u64) -> RequestCounts {
        RequestCounts {
            success,
            failed,
            ..RequestCounts::default()
        }
    }

    fn source(name: &str, success: u64, failed: u64) -> SourceStats {
        let requests = counts(success, failed);
        SourceStats {
            source: name.to_owned(),
            failure_rate: requests.failure_rate(),
            requests,
        }
    }

    fn stats() -> Stats {
        let series = (0..3)
            .map(|i| BucketStats {
                start: i * 3_600_000,
                requests: counts(10, 2),
                events: 12,
                sources: if i == 1 {
                    vec![source("<b>AD</b>", 5, 0)]
                } else {
                    vec![source("<b>AD</b>", 4, 1), source("HR", 1, 1)]
                },
            })
            .collect();
        Stats {
            since: 0,
            until: 3 * 3_600_000,
            bucket: Bucket::Hour,
            requests: counts(30, 6),
            events: Default::default(),
            sources: vec![
                source("<b>AD</b>", 13, 2),
                source("HR", 2, 2),
                source("idle", 0, 0),
            ],
            series,
            top_errors: Vec::new(),
        }
    }

    #[test]
    fn one_line_per_source_with_requests_and_gaps_where_there_were_none() {
        let stats = stats();
        let lines = lines(&stats);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].rates, vec![Some(0.2), Some(0.0), Some(0.2)]);
        assert_eq!(lines[1].rates, vec![Some(0.5), None, Some(0.5)]);
        let html = render(&stats, &lines, "Failure rate").into_string();
        assert_eq!(html.matches("<path").count(), 2);
        assert!(html.contains("&lt;b&gt;AD&lt;/b&gt;"), "names are escaped");
        assert!(!html.contains("<b>AD"));
        // The second source has a gap: two separate dots.
        assert!(html.contains("h0M"), "{html}");
    }

    #[test]
    fn the_y_axis_fits_the_highest_rate() {
        let line = |rate| Line {
            source: "s".into(),
            rates: vec![Some(rate)],
            overall: rate,
        };
        assert_eq!(y_max(&[line(0.01)]), 0.05);
        assert_eq!(y_max(&[line(0.3)]), 0.5);
        assert_eq!(y_max(&[line(1.0)]), 1.0);
        assert_eq!(y_max(&[]), 0.05);
        assert_eq!(tick(1.0), "100 %");
        assert_eq!(tick(0.0125), "1.25 %");
        assert_eq!(tick(0.0375), "3.75 %");
        assert_eq!(tick(0.025), "2.5 %");
        assert_eq!(tick(0.0), "0 %");
    }

    #[test]
    fn an_empty_range_says_so() {
        let mut stats = stats();
        stats.sources.clear();
        let html = render(&stats, &lines(&stats), "Failure rate").into_string();
        assert!(html.contains("No account requests in this range."));
        assert!(!html.contains("<path"));
    }
}
