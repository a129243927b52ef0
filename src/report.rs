//! SVG figures for a run folder: the loss curve and the confusion matrix (no plotting dependency;
//! plain SVG any browser shows).

use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= n as f64).unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    (0..).map(|i| start + i as f64 * step).take_while(|v| *v <= hi + 1e-12).collect()
}

/// Training loss (line) and validation loss (points) against optimizer steps.
pub fn loss_curve(train: &[(usize, f64)], eval: &[(usize, f64)], title: &str) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 70.0, 20.0, 40.0, 50.0);
    let all = train.iter().chain(eval);
    let max_step = all.clone().map(|(s, _)| *s).max().unwrap_or(1).max(1) as f64;
    let (mut lo, mut hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| (a.min(*v), b.max(*v)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let pad = 0.05 * (hi - lo);
    lo = (lo - pad).max(0.0);
    hi += pad;
    let x = |s: f64| left + (w - left - right) * s / max_step;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo));
    let mut s = String::new();
    let _ = write!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#);
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#, w / 2.0, esc(title));
    for t in nice_ticks(lo, hi, 6) {
        let _ = write!(s, r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{t:.3}</text>"##, w - right, left - 6.0, y(t) + 4.0, y = y(t));
    }
    for t in nice_ticks(0.0, max_step, 8) {
        let _ = write!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, x(t), h - bottom + 18.0, t as usize);
    }
    let _ = write!(s, r#"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="black"/><line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="black"/>"#, h - bottom, w - right, h - bottom, h - bottom);
    let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">optimizer step</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">loss</text>"#, (left + w - right) / 2.0, h - 10.0, h / 2.0, h / 2.0);
    if !train.is_empty() {
        let pts: Vec<String> = train.iter().map(|(st, v)| format!("{:.1},{:.1}", x(*st as f64), y(*v))).collect();
        let _ = write!(s, r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##, pts.join(" "));
    }
    if !eval.is_empty() {
        let pts: Vec<String> = eval.iter().map(|(st, v)| format!("{:.1},{:.1}", x(*st as f64), y(*v))).collect();
        let _ = write!(s, r##"<polyline fill="none" stroke="#d62728" stroke-width="1.5" stroke-dasharray="4 3" points="{}"/>"##, pts.join(" "));
        for (st, v) in eval {
            let _ = write!(s, r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#d62728"/>"##, x(*st as f64), y(*v));
        }
    }
    let _ = write!(s, r##"<line x1="{}" x2="{}" y1="{top}" y2="{top}" stroke="#1f77b4" stroke-width="2"/><text x="{}" y="{}">training loss</text>"##, w - 190.0, w - 170.0, w - 165.0, top + 4.0);
    let _ = write!(s, r##"<circle cx="{}" cy="{}" r="3.5" fill="#d62728"/><text x="{}" y="{}">validation loss</text></svg>"##, w - 180.0, top + 18.0, w - 165.0, top + 22.0);
    s
}

/// A confusion matrix (rows: true label, columns: predicted), counts shaded by row share.
pub fn confusion_matrix(confusion: &[Vec<usize>], labels: &[String], title: &str) -> String {
    let k = confusion.len().max(1);
    let cell = (480.0 / k as f64).clamp(28.0, 90.0);
    let label_w = 12.0 + 7.0 * labels.iter().map(|l| l.chars().count()).max().unwrap_or(1).min(24) as f64;
    let (left, top) = (label_w + 30.0, 70.0);
    let (w, h) = (left + cell * k as f64 + 20.0, top + cell * k as f64 + label_w + 30.0);
    let mut s = String::new();
    let _ = write!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="12">"#);
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/><text x="{:.1}" y="24" text-anchor="middle" font-size="15">{}</text>"#, w / 2.0, esc(title));
    let _ = write!(s, r#"<text x="{:.1}" y="50" text-anchor="middle">predicted</text><text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">true</text>"#, left + cell * k as f64 / 2.0, top + cell * k as f64 / 2.0, top + cell * k as f64 / 2.0);
    for (i, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (j, &c) in row.iter().enumerate() {
            let share = if total == 0 { 0.0 } else { c as f64 / total as f64 };
            let shade = (255.0 - 200.0 * share) as u8;
            let (cx, cy) = (left + j as f64 * cell, top + i as f64 * cell);
            let ink = if share > 0.6 { "white" } else { "black" };
            let _ = write!(s, r##"<rect x="{cx:.1}" y="{cy:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({shade},{shade},255)" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{ink}">{c}</text>"##, cx + cell / 2.0, cy + cell / 2.0 + 4.0);
        }
        let name = labels.get(i).map(String::as_str).unwrap_or("?");
        let _ = write!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, left - 6.0, top + i as f64 * cell + cell / 2.0 + 4.0, esc(name));
    }
    for j in 0..k {
        let name = labels.get(j).map(String::as_str).unwrap_or("?");
        let (tx, ty) = (left + j as f64 * cell + cell / 2.0, top + k as f64 * cell + 10.0);
        let _ = write!(s, r#"<text x="{tx:.1}" y="{ty:.1}" transform="rotate(45 {tx:.1} {ty:.1})">{}</text>"#, esc(name));
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_well_formed_svg() {
        let c = loss_curve(&[(1, 0.7), (2, 0.6), (3, 0.4)], &[(3, 0.5)], "loss <run>");
        assert!(c.starts_with("<svg") && c.ends_with("</svg>") && c.contains("polyline") && c.contains("&lt;run&gt;"));
        let m = confusion_matrix(&[vec![5, 1], vec![2, 7]], &["neg".into(), "pos".into()], "confusion");
        assert!(m.contains(">7</text>") && m.contains(">neg</text>") && m.ends_with("</svg>"));
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
    }
}
