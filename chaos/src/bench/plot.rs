//! `bench-results.svg`: every target as "measured ÷ goal" (for goals of the `<=` kind,
//! "goal ÷ measured"), so 1.0 is the line to clear and taller is better; green bars meet
//! their goal, red bars miss it.

use std::path::Path;

use plotters::prelude::*;

use super::Results;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Draws the chart.
pub fn draw(path: &Path, r: &Results) -> anyhow::Result<()> {
    let bars: Vec<(String, f64, bool)> = r
        .targets
        .iter()
        .filter_map(|t| {
            let v = t.value?;
            let score = if t.op == ">=" {
                v / t.goal
            } else if v > 0.0 {
                t.goal / v
            } else {
                10.0
            };
            Some((t.id.clone(), score.clamp(0.0, 10.0), t.met.unwrap_or(false)))
        })
        .collect();
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = bars.len().max(1);
    let top = bars.iter().map(|b| b.1).fold(2.0, f64::max) * 1.1;
    let title = format!(
        "palisade bench{}: measured ÷ goal per target (≥ 1 meets it), {} CPUs",
        if r.quick { " --quick" } else { "" },
        r.machine.cpus
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(err)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.26 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("target (issue 8)")
        .y_desc("measured ÷ goal")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v, met))| {
            let color = if *met { RGBColor(60, 160, 80) } else { RGBColor(210, 60, 50) };
            Rectangle::new([(i as f64 + 0.15, 0.0), (i as f64 + 0.85, *v)], color.filled())
        }))
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v, _))| {
            Text::new(format!("{v:.2}"), (i as f64 + 0.3, v + top * 0.02), ("sans-serif", 12))
        }))
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(vec![(0.0, 1.0), (n as f64, 1.0)], BLACK.stroke_width(2)))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
