//! PNG plots of a bench report, drawn with plotters into a pixel buffer and encoded with
//! `image`. Text uses egui's bundled Ubuntu Light font, so no system fonts are needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::measure::NOISE_FLOOR;
use super::report::{is_cached_mode, verdict_fidelity, FrameRecord, Report, RunRecord};

const SIZE: (u32, u32) = (1200, 640);

/// One per-frame figure of a run, if it has it.
type FrameValue = dyn Fn(&FrameRecord) -> Option<f64>;

fn register_fonts() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            if plotters::style::register_font("sans-serif", style, epaint_default_fonts::UBUNTU_LIGHT).is_err() {
                result = Err(anyhow!("the bundled font could not be parsed"));
            }
        }
    });
    result
}

/// Draws into an RGB buffer and writes it as PNG.
fn save(
    path: &Path,
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        draw(root.clone())?;
        root.present()?;
    }
    image::save_buffer(path, &buf, SIZE.0, SIZE.1, image::ExtendedColorType::Rgb8)
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

fn file_name(parts: &[&str]) -> String {
    let joined = parts.join("_");
    let clean: String = joined.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("{clean}.png")
}

fn color(k: usize) -> RGBColor {
    // Tableau 10.
    const COLORS: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    COLORS[k % COLORS.len()]
}

/// Every plot of the report; returns the files written.
pub fn render_all(report: &Report, out: &Path) -> Result<Vec<PathBuf>> {
    register_fonts()?;
    let mut files = Vec::new();
    let mut groups: Vec<(&str, &str)> = report.runs.iter().map(|r| (r.model.as_str(), r.clip.as_str())).collect();
    groups.dedup();
    for (model, clip) in groups {
        let runs: Vec<&RunRecord> = report.runs.iter().filter(|r| r.model == model && r.clip == clip).collect();
        let cached: Vec<&RunRecord> = runs.iter().copied().filter(|r| is_cached_mode(&r.mode)).collect();
        if !cached.is_empty() {
            let path = out.join(file_name(&["nodes", model, clip]));
            node_hit_rates(&path, model, clip, &cached)?;
            files.push(path);
        }
        let path = out.join(file_name(&["timeline", model, clip]));
        let timed: Vec<&RunRecord> = runs.iter().copied().filter(|r| r.mode != NOISE_FLOOR).collect();
        timeline(&path, model, clip, &timed)?;
        files.push(path);
    }
    for (model, clip) in pareto_groups(report) {
        let runs: Vec<&RunRecord> = report.runs.iter().filter(|r| r.model == model && r.clip == clip).collect();
        let path = out.join(file_name(&["pareto", model, clip]));
        pareto(&path, model, clip, &runs)?;
        files.push(path);
    }
    Ok(files)
}

/// Bars: hit rate of every node, one bar per mode.
fn node_hit_rates(path: &Path, model: &str, clip: &str, runs: &[&RunRecord]) -> Result<()> {
    save(path, |root| {
        let n = runs[0].nodes.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{model} on {clip}: hit rate per node"), ("sans-serif", 26))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..1.05)?;
        chart
            .configure_mesh()
            .x_desc("node (input -> output, in execution order)")
            .y_desc("hit rate (pixels reused)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{:.0}%", 100.0 * v))
            .disable_x_mesh()
            .draw()?;
        let width = 0.9 / runs.len() as f64;
        for (k, r) in runs.iter().enumerate() {
            let c = color(k);
            chart
                .draw_series(r.nodes.iter().enumerate().map(|(i, node)| {
                    let x0 = i as f64 - 0.45 + k as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, node.hit_rate)], c.filled())
                }))?
                .label(format!("{} (MAC saving {:.1}%)", r.mode, 100.0 * r.mac_saving))
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
        Ok(())
    })
}

/// Two panels over frames: dirty fraction of the input, and latency per path.
fn timeline(path: &Path, model: &str, clip: &str, runs: &[&RunRecord]) -> Result<()> {
    save(path, |root| {
        let root =
            root.titled(&format!("{model} on {clip}: per-frame dirty fraction and latency"), ("sans-serif", 26))?;
        let (top, bottom) = root.split_vertically(SIZE.1 as i32 / 2 - 20);
        let frames = runs[0].per_frame.len().max(2);
        let mut dirty = ChartBuilder::on(&top)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(1f64..frames as f64, 0f64..1.0)?;
        dirty
            .configure_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("dirty input tiles")
            .y_label_formatter(&|v| format!("{:.0}%", 100.0 * v))
            .draw()?;
        for (k, r) in runs.iter().filter(|r| r.mode != "full").enumerate() {
            let c = color(k);
            dirty
                .draw_series(LineSeries::new(
                    r.per_frame.iter().enumerate().map(|(i, f)| ((i + 1) as f64, 1.0 - f.input_hit_rate)),
                    c.stroke_width(2),
                ))?
                .label(r.mode.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        }
        dirty.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;

        let max_ms = runs
            .iter()
            .flat_map(|r| r.per_frame.iter().flat_map(|f| [Some(f.ms_full), Some(f.ms_cached), f.ms_tract, f.ms_ort]))
            .flatten()
            .fold(1.0f64, f64::max);
        let mut latency = ChartBuilder::on(&bottom)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1f64..frames as f64, 0f64..max_ms * 1.05)?;
        latency
            .configure_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("frame")
            .y_desc("ms per frame")
            .draw()?;
        let series = |f: &FrameValue, r: &RunRecord| -> Vec<(f64, f64)> {
            r.per_frame.iter().enumerate().filter_map(|(i, fr)| f(fr).map(|v| ((i + 1) as f64, v))).collect()
        };
        let reference_lines: [(&str, RGBColor, &FrameValue); 3] = [
            ("engine full", BLACK, &|f| Some(f.ms_full)),
            ("tract full", RGBColor(150, 150, 150), &|f| f.ms_tract),
            ("ONNX Runtime", RGBColor(120, 60, 160), &|f| f.ms_ort),
        ];
        for (name, c, get) in reference_lines {
            let points = series(get, runs[0]);
            if !points.is_empty() {
                latency
                    .draw_series(LineSeries::new(points, c.stroke_width(1)))?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
            }
        }
        for (k, r) in runs.iter().filter(|r| r.mode != "full").enumerate() {
            let c = color(k);
            latency
                .draw_series(LineSeries::new(series(&|f| Some(f.ms_cached), r), c.stroke_width(2)))?
                .label(r.mode.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        }
        latency.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
        Ok(())
    })
}

/// The (model, clip) pairs that have a fidelity to plot.
fn pareto_groups(report: &Report) -> Vec<(&str, &str)> {
    let mut groups: Vec<(&str, &str)> = report
        .runs
        .iter()
        .filter(|r| verdict_fidelity(r).is_some())
        .map(|r| (r.model.as_str(), r.clip.as_str()))
        .collect();
    groups.dedup();
    groups
}

/// The speed–fidelity plane of one (model, clip): every cached mode and every baseline at
/// (mean speedup over engine-full, fidelity), the frontier of the cached modes, and the noise
/// floor (engine-full against its own previous frame) as a dashed line.
fn pareto(path: &Path, model: &str, clip: &str, runs: &[&RunRecord]) -> Result<()> {
    save(path, |root| {
        let metric = if runs.iter().any(|r| r.top1_agreement.is_some()) { "top-1 agreement" } else { "mask IoU" };
        let points: Vec<(&RunRecord, f64)> =
            runs.iter().filter(|r| r.mode != "full").filter_map(|r| verdict_fidelity(r).map(|f| (*r, f))).collect();
        let lo = points.iter().map(|p| p.1).fold(1.0f64, f64::min);
        let y0 = (lo - 0.05).clamp(0.0, 0.95);
        let x1 = points.iter().map(|p| p.0.speedup_mean).filter(|v| v.is_finite()).fold(1.0f64, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{model} on {clip}: speed vs fidelity"), ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x1, y0..1.01f64)?;
        chart
            .configure_mesh()
            .x_desc("speedup over engine full (mean ms per frame, same run)")
            .y_desc(format!("{metric} with engine full"))
            .y_label_formatter(&|v| format!("{:.0}%", 100.0 * v))
            .draw()?;
        type Kind = (&'static str, fn(&str) -> bool, RGBColor);
        let kinds: [Kind; 4] = [
            ("cache", |m| !m.starts_with("skip=") && !m.starts_with("gate=") && m != NOISE_FLOOR, color(0)),
            ("skip-N", |m| m.starts_with("skip="), color(1)),
            ("gate", |m| m.starts_with("gate="), color(2)),
            ("noise floor", |m| m == NOISE_FLOOR, color(3)),
        ];
        for (name, is, c) in kinds {
            let mut these: Vec<(f64, f64)> =
                points.iter().filter(|(r, _)| is(&r.mode)).map(|(r, f)| (r.speedup_mean, *f)).collect();
            if these.is_empty() {
                continue;
            }
            if name == "noise floor" {
                let f = these[0].1;
                chart
                    .draw_series(DashedLineSeries::new(vec![(0.0, f), (x1, f)], 6, 4, c.stroke_width(2)))?
                    .label(format!("noise floor: full(t) vs full(t-1), {:.1}%", 100.0 * f))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
                continue;
            }
            these.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(these.iter().map(|&p| Circle::new(p, 5, c.filled())))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, c.filled()));
            if name == "cache" {
                chart.draw_series(LineSeries::new(frontier(&these), c.stroke_width(2)))?;
            }
        }
        for (r, f) in &points {
            if r.mode != NOISE_FLOOR {
                chart.draw_series(std::iter::once(Text::new(
                    r.mode.clone(),
                    (r.speedup_mean, *f),
                    ("sans-serif", 13).into_font(),
                )))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// The Pareto frontier of `(speed, fidelity)` points sorted by speed: the points that no other
/// point beats on both axes, fastest last.
fn frontier(sorted: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &p in sorted.iter().rev() {
        if out.last().is_none_or(|q| p.1 > q.1) {
            out.push(p);
        }
    }
    out.reverse();
    out
}

/// The mean training loss per epoch (`framecache distill`).
#[cfg(feature = "train")]
pub fn loss_curve(path: &Path, loss: &[f32]) -> Result<()> {
    register_fonts()?;
    let max = loss.iter().copied().fold(0.0f32, f32::max).max(1e-6) as f64 * 1.05;
    save(path, |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption("training loss (mean per epoch)", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1f64..(loss.len().max(2)) as f64, 0f64..max)?;
        chart.configure_mesh().x_desc("epoch").y_desc("loss").draw()?;
        let points = loss.iter().enumerate().map(|(i, &l)| ((i + 1) as f64, l as f64));
        chart.draw_series(LineSeries::new(points.clone(), color(0).stroke_width(2)))?;
        chart.draw_series(points.map(|p| Circle::new(p, 3, color(0).filled())))?;
        Ok(())
    })
}
