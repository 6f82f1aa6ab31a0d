//! The PNG chart: latency percentiles of notify-then-fetch against polling, latency
//! against fan-out, and the designs side by side (through a terminal server, nchan) at
//! the busy rate and under bursts. Rendered with plotters' bitmap backend and an
//! embedded DejaVu Sans, so it needs no system fonts.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::peers::{Design, PeerSet};
use crate::scenarios::Results;

/// DejaVu Sans (see tests/assets/README.md for its licence).
const FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");

/// Lowest value shown on the logarithmic axes, ms.
const FLOOR_MS: f64 = 0.01;

const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

fn font() -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded font could not be loaded"))
}

fn y_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let max = values.fold(1.0f64, f64::max);
    FLOOR_MS..10f64.powf(max.log10().ceil() + 0.2)
}

/// Draw `results` into a PNG at `path`.
pub fn draw(results: &Results, path: &Path) -> anyhow::Result<()> {
    font()?;
    let root = BitMapBackend::new(path, (1400, 1200)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(600);
    let (left, right) = top.split_horizontally(700);
    if results.plan.core {
        percentiles(results, &left).map_err(|e| anyhow!("chart: {e}"))?;
    }
    fanout(results, &right).map_err(|e| anyhow!("chart: {e}"))?;
    let (left, right) = bottom.split_horizontally(700);
    let sets = [
        (&results.servers.busy, &left),
        (&results.servers.bursts, &right),
    ];
    for (set, area) in sets {
        if let Some(set) = set {
            designs(set, area).map_err(|e| anyhow!("chart: {e}"))?;
        }
    }
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Colour of each design in the side-by-side panels.
fn colour(design: Design) -> RGBColor {
    match design {
        Design::Direct => BLUE,
        Design::Relay => GREEN,
        Design::RelayInline => RGBColor(0, 110, 0),
        Design::Nchan => RGBColor(230, 120, 0),
        Design::NchanQuickAck => MAGENTA,
        Design::Poll1s => RED,
    }
}

fn designs(set: &PeerSet, area: &Area) -> DrawResult {
    let series: Vec<(String, [f64; 5], RGBColor)> = set
        .designs
        .iter()
        .map(|d| {
            let name = d.design.label().to_owned();
            (name, d.stats.per_subscriber.points(), colour(d.design))
        })
        .collect();
    let caption = format!(
        "Side by side ({}), {} subscribers, {:.0} bids/s",
        set.load, set.subscribers, set.bid_rate
    );
    lines(area, &caption, &series)
}

fn percentiles(r: &Results, area: &Area) -> DrawResult {
    let series = [
        (
            "ours, per subscriber",
            r.latency.per_subscriber.points(),
            BLUE,
        ),
        (
            "ours, all subscribers",
            r.latency.all_subscribers.points(),
            CYAN,
        ),
        (
            "polling 250 ms",
            r.busy.poll_250.per_subscriber.points(),
            MAGENTA,
        ),
        ("polling 1 s", r.busy.poll_1000.per_subscriber.points(), RED),
        ("loopback floor (HTTP GET)", r.floor.points(), BLACK),
    ];
    let caption = format!(
        "Commit to mirror, {} subscribers, {} bids/s",
        r.plan.subscribers, r.plan.busy_rate
    );
    let series: Vec<(String, [f64; 5], RGBColor)> = series
        .into_iter()
        .map(|(name, points, colour)| (name.to_owned(), points, colour))
        .collect();
    lines(area, &caption, &series)
}

/// Percentile lines (p50 to max) of each series, on a logarithmic axis.
fn lines(area: &Area, caption: &str, series: &[(String, [f64; 5], RGBColor)]) -> DrawResult {
    let range = y_range(series.iter().flat_map(|(_, p, _)| p.iter().copied()));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.2f64..4.2f64, range.log_scale())?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && (0.0..5.0).contains(&i) {
                PERCENTILES[i as usize].to_owned()
            } else {
                String::new()
            }
        })
        .y_desc("milliseconds (log)")
        .label_style(("sans-serif", 14))
        .draw()?;
    for (name, points, color) in series {
        let color = *color;
        let data: Vec<(f64, f64)> = points
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64, v.max(FLOOR_MS)))
            .collect();
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(data.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn fanout(r: &Results, area: &Area) -> DrawResult {
    let points = |f: &dyn Fn(&crate::scenarios::FanoutPoint) -> f64| -> Vec<(f64, f64)> {
        r.fanout
            .iter()
            .map(|p| (p.subscribers as f64, f(p).max(FLOOR_MS)))
            .collect()
    };
    let mut series = vec![
        (
            "per subscriber p50".to_owned(),
            points(&|p| p.stats.per_subscriber.p50),
            BLUE,
        ),
        (
            "per subscriber p99".to_owned(),
            points(&|p| p.stats.per_subscriber.p99),
            CYAN,
        ),
        (
            "all subscribers p99".to_owned(),
            points(&|p| p.stats.all_subscribers.p99),
            RED,
        ),
    ];
    // The wide side-by-side runs at the fan-out rate: its all-subscribers p99 as points.
    if let Some(wide) = &r.servers.wide {
        for d in &wide.designs {
            let at = (f64::from(wide.subscribers), d.stats.all_subscribers.p99);
            let name = match d.design {
                Design::Relay => "all subscribers p99, through a terminal server".to_owned(),
                Design::RelayInline => {
                    "all subscribers p99, through a terminal server, inline on both hops".to_owned()
                }
                other => format!("all subscribers p99, {}", other.label()),
            };
            series.push((name, vec![(at.0, at.1.max(FLOOR_MS))], colour(d.design)));
        }
    }
    let range = y_range(
        series
            .iter()
            .flat_map(|(_, p, _)| p.iter().map(|(_, y)| *y)),
    );
    let most = series
        .iter()
        .flat_map(|(_, p, _)| p.iter().map(|(x, _)| *x as u32))
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let caption = format!("Fan-out, {} bids/s", r.plan.fanout_rate);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..most * 1.3).log_scale(), range.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("subscribers (log)")
        .y_desc("milliseconds (log)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (name, data, color) in series {
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(data.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
