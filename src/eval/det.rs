//! DET curves: the probit warp and a hand-written SVG plot.

use std::fmt::Write as _;
use std::path::Path;

use super::{EvalError, ScoreSet};

/// One curve of a DET plot.
#[derive(Debug, Clone, Copy)]
pub struct DetSystem<'a> {
    /// Legend label.
    pub label: &'a str,
    /// The system's scores.
    pub scores: &'a ScoreSet,
}

pub use crate::score::probit;

const TICKS: [(f64, &str); 7] = [
    (0.001, "0.1"),
    (0.01, "1"),
    (0.02, "2"),
    (0.05, "5"),
    (0.1, "10"),
    (0.2, "20"),
    (0.4, "40"),
];
const P_MIN: f64 = 0.0005;
const P_MAX: f64 = 0.5;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const SIZE: f64 = 560.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 60.0;
const RIGHT: f64 = 20.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Plot coordinate of a probability on either axis (0 at `P_MIN`, `SIZE` at `P_MAX`), clamped to the axes.
fn warp(p: f64) -> f64 {
    let (lo, hi) = (probit(P_MIN), probit(P_MAX));
    (probit(p.clamp(P_MIN, P_MAX)) - lo) / (hi - lo) * SIZE
}

/// Renders a DET plot (false-reject rate against false-accept rate, both on probit axes from 0.05 % to
/// 50 %, ticks at 0.1, 1, 2, 5, 10, 20 and 40 %) as an SVG document: one curve per system, its EER marked
/// with a circle, and a legend with the EERs. Points beyond the axes are drawn on the border.
pub fn render_det_svg(systems: &[DetSystem<'_>]) -> Result<String, EvalError> {
    if systems.is_empty() {
        return Err(EvalError::NoSystems);
    }
    let (w, h) = (LEFT + SIZE + RIGHT, TOP + SIZE + BOTTOM);
    let x = |p: f64| LEFT + warp(p);
    let y = |p: f64| TOP + SIZE - warp(p);
    let mut s = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    for (p, label) in TICKS {
        let (px, py) = (x(p), y(p));
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{b:.1}" stroke="#ddd"/><line x1="{LEFT}" y1="{py:.1}" x2="{r:.1}" y2="{py:.1}" stroke="#ddd"/>"##,
            b = TOP + SIZE,
            r = LEFT + SIZE
        );
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{ty:.1}" text-anchor="middle">{label}</text><text x="{tx:.1}" y="{py4:.1}" text-anchor="end">{label}</text>"#,
            ty = TOP + SIZE + 18.0,
            tx = LEFT - 6.0,
            py4 = py + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{SIZE}" height="{SIZE}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r##"<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}" stroke="#999" stroke-dasharray="4 4"/>"##,
        x0 = x(P_MIN),
        y0 = y(P_MIN),
        x1 = x(P_MAX),
        y1 = y(P_MAX)
    );
    let _ = writeln!(
        s,
        r#"<text x="{cx:.1}" y="{ly:.1}" text-anchor="middle">False accept rate (%)</text>"#,
        cx = LEFT + SIZE / 2.0,
        ly = TOP + SIZE + 42.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {cy:.1}) rotate(-90)" text-anchor="middle">False reject rate (%)</text>"#,
        cy = TOP + SIZE / 2.0
    );
    for (i, sys) in systems.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut pts = String::new();
        let mut last = (f64::NAN, f64::NAN);
        for p in sys.scores.det_points() {
            let q = (
                (x(p.p_fa) * 10.0).round() / 10.0,
                (y(p.p_miss) * 10.0).round() / 10.0,
            );
            if q != last {
                let _ = write!(pts, "{:.1},{:.1} ", q.0, q.1);
                last = q;
            }
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{}"/>"#,
            pts.trim_end()
        );
        let eer = sys.scores.eer().value;
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4.5" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            x(eer),
            y(eer)
        );
        let ly = TOP + 18.0 + 18.0 * i as f64;
        let lx = LEFT + SIZE - 250.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{a:.1}" x2="{b:.1}" y2="{a:.1}" stroke="{colour}" stroke-width="2"/><text x="{t:.1}" y="{c:.1}">{} (EER {:.2} %)</text>"#,
            escape(sys.label),
            eer * 100.0,
            a = ly - 4.0,
            b = lx + 24.0,
            t = lx + 30.0,
            c = ly
        );
    }
    s.push_str("</svg>\n");
    Ok(s)
}

/// Writes [`render_det_svg`] to a file.
pub fn write_det_svg(path: &Path, systems: &[DetSystem<'_>]) -> Result<(), EvalError> {
    let svg = render_det_svg(systems)?;
    std::fs::write(path, svg).map_err(|source| EvalError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn probit_known_values() {
        assert_eq!(probit(0.5), 0.0);
        for (p, z) in [
            (0.975, 1.959_963_984_540_054),
            (0.01, -2.326_347_874_040_841),
            (0.001, -3.090_232_306_167_813),
            (0.2, -0.841_621_233_572_914),
            (0.999_99, 4.264_890_793_922_602),
        ] {
            assert!(
                (probit(p) - z).abs() < 1e-8,
                "probit({p}) = {} not {z}",
                probit(p)
            );
            assert!((probit(1.0 - p) + z).abs() < 1e-8);
        }
        assert_eq!(probit(0.0), f64::NEG_INFINITY);
        assert_eq!(probit(1.0), f64::INFINITY);
        assert!(probit(1.5).is_nan() && probit(f64::NAN).is_nan());
    }

    #[test]
    fn svg_has_axes_curves_legend_and_eer_marks() {
        let a = ScoreSet::new(&[0.9, 0.8, 0.4, 0.6], &[0.7, 0.3, 0.2, 0.1, 0.0]).unwrap();
        let b = ScoreSet::new(&[0.5, 0.4], &[0.45, 0.3, 0.6]).unwrap();
        let svg = render_det_svg(&[
            DetSystem {
                label: "raw <cosine>",
                scores: &a,
            },
            DetSystem {
                label: "as-norm",
                scores: &b,
            },
        ])
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for label in ["0.1", "1", "2", "5", "10", "20", "40"] {
            assert!(svg.contains(&format!(">{label}</text>")), "tick {label}");
        }
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("raw &lt;cosine&gt; (EER"));
        assert!(svg.contains("False accept rate (%)") && svg.contains("False reject rate (%)"));
        // Every coordinate stays inside the plot area.
        for pts in svg.split("points=\"").skip(1) {
            let pts = pts.split('"').next().unwrap();
            for xy in pts.split(' ') {
                let (px, py) = xy.split_once(',').unwrap();
                let (px, py): (f64, f64) = (px.parse().unwrap(), py.parse().unwrap());
                assert!((LEFT - 0.1..=LEFT + SIZE + 0.1).contains(&px));
                assert!((TOP - 0.1..=TOP + SIZE + 0.1).contains(&py));
            }
        }
        assert!(matches!(render_det_svg(&[]), Err(EvalError::NoSystems)));
    }

    #[test]
    fn writes_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = ScoreSet::new(&[1.0], &[0.0]).unwrap();
        let path = dir.path().join("det.svg");
        write_det_svg(
            &path,
            &[DetSystem {
                label: "a",
                scores: &a,
            }],
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("<polyline")
        );
        let bad = dir.path().join("missing/det.svg");
        assert!(matches!(
            write_det_svg(
                &bad,
                &[DetSystem {
                    label: "a",
                    scores: &a
                }]
            ),
            Err(EvalError::Write { .. })
        ));
    }
}
