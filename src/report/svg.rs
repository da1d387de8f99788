//! Inline SVG charts, written by hand (no plotting crate, no fonts to embed): horizontal
//! bars, a histogram and a heatmap. Every label is HTML-escaped; the charts size
//! themselves from their data and stay small (one element per bar or cell).

use super::html::esc;
use std::fmt::Write;

/// One horizontal bar: its label, its value, and the text shown after it.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub note: String,
}

/// Labels longer than this many characters are cut (the bar's tooltip has them whole).
const MAX_LABEL: usize = 64;

fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

const FONT: &str = r#"font-family="system-ui,sans-serif" font-size="12""#;

/// Horizontal bars scaled to the largest value (or to `max` when given: e.g. 1.0 for
/// shares), labels on the left.
pub fn bars(bars: &[Bar], max: Option<f64>, color: &str) -> String {
    if bars.is_empty() {
        return String::new();
    }
    let label = |b: &Bar| clip(&b.label, MAX_LABEL);
    let longest = bars
        .iter()
        .map(|b| label(b).chars().count())
        .max()
        .unwrap_or(1);
    let label_w = (7.2 * longest as f64).clamp(60.0, 7.2 * MAX_LABEL as f64);
    let (bar_w, row_h) = (360.0, 20.0);
    let top = max
        .unwrap_or_else(|| bars.iter().map(|b| b.value).fold(0.0, f64::max))
        .max(f64::MIN_POSITIVE);
    let width = label_w + bar_w + 150.0;
    let height = row_h * bars.len() as f64 + 4.0;
    let mut s = format!(
        r#"<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>"#
    );
    for (i, b) in bars.iter().enumerate() {
        let y = i as f64 * row_h + 2.0;
        let w = (b.value.max(0.0) / top).min(1.0) * bar_w;
        let _ = write!(
            s,
            r#"<text x="{tx}" y="{ty}" text-anchor="end">{label}</text><rect x="{x}" y="{y}" width="{w:.1}" height="{h}" fill="{color}"><title>{whole}: {note}</title></rect><text x="{nx:.1}" y="{ty}">{note}</text>"#,
            tx = label_w - 6.0,
            ty = y + 13.0,
            label = esc(&label(b)),
            whole = esc(&b.label),
            x = label_w,
            h = row_h - 4.0,
            note = esc(&b.note),
            nx = label_w + w + 4.0,
        );
    }
    s.push_str("</svg>");
    s
}

/// A vertical histogram: one bar per bin (label, count), heights scaled to the largest.
pub fn histogram(bins: &[(String, u64)], color: &str) -> String {
    if bins.is_empty() {
        return String::new();
    }
    let (col_w, plot_h, pad, left) = (34.0, 120.0, 30.0, 50.0);
    let width = left + col_w * bins.len() as f64 + 10.0;
    let height = plot_h + pad + 30.0;
    let top = bins.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let mut s = format!(
        r#"<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>"#
    );
    for (i, (label, n)) in bins.iter().enumerate() {
        let x = left + i as f64 * col_w;
        let h = *n as f64 / top * plot_h;
        let y = pad + plot_h - h;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{y:.1}" width="{w}" height="{h:.1}" fill="{color}"><title>{l}: {n}</title></rect><text x="{cx}" y="{ny:.1}" text-anchor="middle" font-size="10">{n}</text><text x="{cx}" y="{ly}" text-anchor="middle" font-size="10" transform="rotate(-30 {cx} {ly})">{l}</text>"#,
            w = col_w - 4.0,
            l = esc(label),
            cx = x + (col_w - 4.0) / 2.0,
            ny = y - 3.0,
            ly = pad + plot_h + 14.0,
        );
    }
    s.push_str("</svg>");
    s
}

/// One heatmap cell: its shade (0..=1; None = no colour) and its text.
pub struct Cell {
    pub shade: Option<f64>,
    pub text: String,
    pub title: String,
}

/// A heatmap of `rows` x `cols`; `cell(r, c)` gives each cell (None: empty).
pub fn heatmap(
    rows: &[String],
    cols: &[String],
    cell: impl Fn(usize, usize) -> Option<Cell>,
) -> String {
    if rows.is_empty() || cols.is_empty() {
        return String::new();
    }
    let label_w =
        (7.0 * rows.iter().map(|r| r.chars().count()).max().unwrap_or(1) as f64).clamp(60.0, 240.0);
    let head_h =
        (6.0 * cols.iter().map(|c| c.chars().count()).max().unwrap_or(1) as f64).clamp(30.0, 150.0);
    let (cw, ch) = (74.0, 24.0);
    // the column labels lean right, past the last column, by about their length
    let width = label_w + cw * cols.len() as f64 + head_h;
    let height = head_h + ch * rows.len() as f64 + 4.0;
    let mut s = format!(
        r#"<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>"#
    );
    for (j, c) in cols.iter().enumerate() {
        let x = label_w + j as f64 * cw + cw / 2.0;
        let y = head_h - 6.0;
        let _ = write!(
            s,
            r#"<text x="{x}" y="{y}" transform="rotate(-35 {x} {y})">{}</text>"#,
            esc(c)
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = head_h + i as f64 * ch;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 6.0,
            y + 16.0,
            esc(r)
        );
        for j in 0..cols.len() {
            let Some(c) = cell(i, j) else { continue };
            let x = label_w + j as f64 * cw;
            let fill = match c.shade {
                Some(v) => shade(v),
                None => "#eeeeee".to_string(),
            };
            let _ = write!(
                s,
                r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}" stroke="white"><title>{t}</title></rect><text x="{tx}" y="{ty}" text-anchor="middle" font-size="11">{text}</text>"#,
                w = cw,
                h = ch,
                t = esc(&c.title),
                tx = x + cw / 2.0,
                ty = y + 16.0,
                text = esc(&c.text),
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// From pale red (0) through yellow to green (1).
fn shade(v: f64) -> String {
    let v = v.clamp(0.0, 1.0);
    let (r, g) = if v < 0.5 {
        (235.0, 120.0 + 230.0 * v)
    } else {
        (235.0 - 300.0 * (v - 0.5), 235.0)
    };
    format!("rgb({:.0},{:.0},140)", r, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_sizes_follow_the_data() {
        let b = bars(
            &[
                Bar {
                    label: "<script>".into(),
                    value: 2.0,
                    note: "2".into(),
                },
                Bar {
                    label: "b".into(),
                    value: 1.0,
                    note: "1".into(),
                },
            ],
            None,
            "#47a",
        );
        assert!(b.contains("&lt;script&gt;") && !b.contains("<script>"));
        assert!(b.contains(r#"width="360.0""#) && b.contains(r#"width="180.0""#));
        let h = histogram(&[("1".into(), 3), ("2".into(), 0)], "#47a");
        assert_eq!(h.matches("<rect").count(), 2);
        assert!(heatmap(&[], &["x".into()], |_, _| None).is_empty());
        let m = heatmap(&["t".into()], &["a".into(), "b".into()], |_, j| {
            (j == 0).then(|| Cell {
                shade: Some(1.0),
                text: "1/1".into(),
                title: "a".into(),
            })
        });
        assert_eq!(m.matches("<rect").count(), 1);
        assert!(m.contains("rgb(85,235,140)"));
    }
}
