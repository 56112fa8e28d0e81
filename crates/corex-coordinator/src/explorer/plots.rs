//! Line charts as inline SVG, drawn with plotters' SVG backend (no fonts loaded: the text is
//! SVG text the browser sets). Pure: points in, markup out.

use plotters::prelude::*;

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

pub const BLUE_LINE: RGBColor = RGBColor(31, 119, 180);
pub const ORANGE_LINE: RGBColor = RGBColor(255, 127, 14);
pub const GREEN_LINE: RGBColor = RGBColor(44, 160, 44);

fn failed(error: impl std::fmt::Display) -> String {
    format!("the chart could not be drawn: {error}")
}

/// The range covering every point of every series, widened where it is a single value.
fn bounds(series: &[Series]) -> Option<(std::ops::Range<f64>, std::ops::Range<f64>)> {
    let points = series.iter().flat_map(|series| &series.points);
    let finite: Vec<&(f64, f64)> = points
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let first = finite.first()?;
    let (mut x0, mut x1, mut y0, mut y1) = (first.0, first.0, first.1, first.1);
    for (x, y) in &finite {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    Some((x0..x1, (y0 - pad)..(y1 + pad)))
}

/// A line chart of `series`, or `None` when no series has a finite point.
pub fn line_chart(caption: &str, x_desc: &str, y_desc: &str, series: &[Series]) -> Option<String> {
    let (x_range, y_range) = bounds(series)?;
    let mut svg = String::new();
    let drawn = draw(&mut svg, caption, x_desc, y_desc, series, x_range, y_range);
    Some(drawn.map(|()| svg).unwrap_or_else(|error| {
        tracing::warn!(%error, caption, "explorer chart");
        String::new()
    }))
}

fn draw(
    svg: &mut String,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    x_range: std::ops::Range<f64>,
    y_range: std::ops::Range<f64>,
) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, (760, 300)).into_drawing_area();
    root.fill(&WHITE).map_err(failed)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(8)
        .y_labels(6)
        .draw()
        .map_err(failed)?;
    for line in series {
        let color = line.color;
        let points = line
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(failed)?
            .label(line.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(failed)?;
    root.present().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_its_lines_and_labels_and_nothing_without_points() {
        let series = [Series {
            name: "train loss".into(),
            points: vec![(0.0, 2.0), (1.0, 1.5), (2.0, f64::NAN), (3.0, 1.0)],
            color: BLUE_LINE,
        }];
        let svg = line_chart("loss", "round", "nats", &series).unwrap_or_default();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<polyline"), "no line drawn");
        assert!(svg.contains("train loss") && svg.contains("round"));
        let empty = [Series {
            name: "none".into(),
            points: vec![(f64::NAN, 1.0)],
            color: BLUE_LINE,
        }];
        assert!(line_chart("loss", "round", "nats", &empty).is_none());
    }
}
