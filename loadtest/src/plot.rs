//! Latency over time as a hand-written SVG: per-second p50, p99 and max.

use std::fmt::Write;

use crate::stats::Point;

const W: f64 = 900.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// A "nice" axis maximum and tick step (1, 2 or 5 times a power of ten).
fn nice_scale(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Name, colour and value of one plotted line.
type Series = (&'static str, &'static str, fn(&Point) -> f64);

/// The SVG document for `points` (one per second).
pub fn render_svg(points: &[Point], title: &str) -> String {
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let t_max = points.iter().map(|p| p.t_s).max().unwrap_or(1).max(1) as f64;
    let y_raw = points.iter().map(|p| p.max_ms).fold(0.0, f64::max);
    let (y_max, y_step) = nice_scale(y_raw);
    let (x_max, x_step) = nice_scale(t_max);
    let x = |t: f64| LEFT + t / x_max * pw;
    let y = |v: f64| TOP + ph - v.min(y_max) / y_max * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Grid and tick labels.
    let mut v = 0.0;
    while v <= y_max + y_step / 2.0 {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            yy + 4.0,
            fmt_num(v)
        );
        v += y_step;
    }
    let mut t = 0.0;
    while t <= x_max + x_step / 2.0 {
        let xx = x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph + 16.0,
            fmt_num(t)
        );
        t += x_step;
    }
    // Axes and their labels.
    let _ = writeln!(
        s,
        r#"<path d="M{LEFT} {TOP} V{:.1} H{:.1}" fill="none" stroke="black"/>"#,
        TOP + ph,
        LEFT + pw
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (s)</text>"#,
        LEFT + pw / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (ms)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // Series, skipping seconds without samples.
    let series: [Series; 3] = [
        ("max", "#d62728", |p| p.max_ms),
        ("p99", "#ff7f0e", |p| p.p99_ms),
        ("p50", "#1f77b4", |p| p.p50_ms),
    ];
    for (i, (name, color, get)) in series.iter().enumerate() {
        let pts: Vec<String> = points
            .iter()
            .filter(|p| get(p) > 0.0)
            .map(|p| format!("{:.1},{:.1}", x(p.t_s as f64), y(get(p))))
            .collect();
        if !pts.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                pts.join(" ")
            );
        }
        let lx = LEFT + 10.0 + i as f64 * 70.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            TOP + 12.0,
            lx + 18.0,
            TOP + 12.0,
            lx + 22.0,
            TOP + 16.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}").trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points() -> Vec<Point> {
        (1..=30)
            .map(|t| Point {
                t_s: t,
                players: 10,
                mbit_s: 25.0,
                latency_samples: 300,
                p50_ms: 5.0 + t as f64 * 0.1,
                p99_ms: 20.0,
                max_ms: 40.0 + t as f64,
                errors: 0,
            })
            .collect()
    }

    #[test]
    fn svg_is_well_formed_and_has_three_series() {
        let svg = render_svg(&points(), "a <test> & more");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("a &lt;test&gt; &amp; more"));
        // Every opened element is self-closed or closed: count tags.
        let opens = svg.matches('<').count();
        let closes = svg.matches('>').count();
        assert_eq!(opens, closes);
        for tag in ["text", "svg"] {
            assert_eq!(
                svg.matches(&format!("<{tag}")).count(),
                svg.matches(&format!("</{tag}>")).count(),
                "{tag}"
            );
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn empty_input_still_renders_axes() {
        let svg = render_svg(&[], "empty");
        assert!(svg.contains("time (s)") && svg.contains("</svg>"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn nice_scales() {
        assert_eq!(nice_scale(43.0), (50.0, 10.0));
        assert_eq!(nice_scale(7.0), (8.0, 2.0));
        assert_eq!(nice_scale(0.0), (1.0, 0.2));
    }
}
