//! Text helpers every stage shares: the words of a text (lowercased, alphanumeric), its
//! normalised form (those words joined by single spaces: what "the same text" is compared
//! on in copies, duplicates and preference pairs), and the mean and median of numbers.

/// A lowercased word of a text.
pub type Word = String;

/// Lowercased alphanumeric words of `s` (letters and digits; everything else splits).
pub fn words(s: &str) -> Vec<Word> {
    let mut out = Vec::with_capacity(s.len() / 6 + 1);
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // ASCII runs byte by byte; other characters decoded (letters and digits of any
        // script are word characters).
        let start = i;
        let mut ascii_only = true;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_alphanumeric() {
                i += 1;
            } else if c >= 0x80 {
                let ch = s[i..].chars().next().expect("char boundary");
                if !ch.is_alphanumeric() {
                    break;
                }
                ascii_only = false;
                i += ch.len_utf8();
            } else {
                break;
            }
        }
        if i > start {
            let w = &s[start..i];
            out.push(if ascii_only {
                w.to_ascii_lowercase()
            } else {
                w.to_lowercase()
            });
        } else {
            // A separator: ASCII, or a non-alphanumeric character.
            i += s[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// Lowercased words joined by single spaces: punctuation and whitespace dropped (quotes,
/// commas and dashes differ in copies).
pub fn normalize(s: &str) -> String {
    words(s).join(" ")
}

/// The arithmetic mean (NaN for no values).
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// The median (the mean of the middle two for an even count; NaN for no values).
pub fn median(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_normal_form_mean_and_median() {
        assert_eq!(
            words("SpO2 95% on 2L, x3d."),
            ["spo2", "95", "on", "2l", "x3d"]
        );
        assert_eq!(
            words("Café ÜBER—naïve 5µg"),
            ["café", "über", "naïve", "5µg"]
        );
        assert_eq!(
            normalize("  Pt. had CHEST-pain, 3x/day;  "),
            "pt had chest pain 3x day"
        );
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert!(mean(&[]).is_nan() && median(&[]).is_nan());
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
