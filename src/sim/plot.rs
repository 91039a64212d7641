//! PNG plot of a scenario run: cell voltages and CVL per cell on top, current and CCL below.
//!
//! Text uses DejaVu Sans from Debian's `fonts-dejavu-core` when installed; without it the plot
//! is drawn without text (axes as described in `docs/charge-control.md`).

use super::closed_loop::Row;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the font once; false when it is not installed.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| match std::fs::read(FONT) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(_) => false,
    })
}

/// Draws `rows` (the 16S `full-charge` kind) into a PNG at `path`.
pub fn plot_png(rows: &[Row], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    plot_run(rows, path, "Full charge, 16S LiFePO4: cell voltages and CVL/cell", 16, 3.45)
}

/// Draws `rows` of a `cells`-cell run into a PNG at `path`, with `title` and a line at
/// `max_cell_v`.
pub fn plot_run(
    rows: &[Row],
    path: &Path,
    title: &str,
    cells: usize,
    max_cell_v: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let text = font_ready();
    let root = BitMapBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(520);
    let hours = rows.last().map_or(1.0, |r| r.time_s / 3600.0).max(0.01);
    let cvl_label = format!("CVL / {cells}");
    let cells = cells.max(1) as f64;
    let v_lo = rows.iter().map(|r| r.min_cell_v).fold(3.6f64, f64::min).max(2.5) - 0.02;
    let v_hi = rows.iter().map(|r| r.max_cell_v).fold(max_cell_v, f64::max) + 0.02;
    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .caption(if text { title } else { "" }, ("sans-serif", 22))
        .x_label_area_size(if text { 36 } else { 0 })
        .y_label_area_size(if text { 60 } else { 0 })
        .build_cartesian_2d(0.0..hours, v_lo..v_hi)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("time (h)").y_desc("V per cell");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    let series = |f: fn(&Row) -> f64| rows.iter().map(move |r| (r.time_s / 3600.0, f(r)));
    chart
        .draw_series(LineSeries::new(series(|r| r.max_cell_v), RED))?
        .label("highest cell")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    chart
        .draw_series(LineSeries::new(series(|r| r.min_cell_v), BLUE))?
        .label("lowest cell")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (r.time_s / 3600.0, r.cvl_v / cells)),
            BLACK.stroke_width(2),
        ))?
        .label(cvl_label.as_str())
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    chart.draw_series(LineSeries::new([(0.0, max_cell_v), (hours, max_cell_v)], MAGENTA.mix(0.5)))?;
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }
    let i_hi = rows.iter().map(|r| r.ccl_a.max(r.current_a)).fold(10.0f64, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(if text { 36 } else { 0 })
        .y_label_area_size(if text { 60 } else { 0 })
        .build_cartesian_2d(0.0..hours, 0.0..i_hi)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("time (h)").y_desc("A");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    chart
        .draw_series(LineSeries::new(series(|r| r.ccl_a), GREEN.stroke_width(2)))?
        .label("CCL")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREEN));
    chart
        .draw_series(LineSeries::new(series(|r| r.current_a), RED))?
        .label("current")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
