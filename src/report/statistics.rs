//! The agreement statistics of the report: Spearman's rank correlation (ties take the
//! average of the ranks they span) and Cohen's kappa over any labels.

use std::collections::HashMap;
use std::hash::Hash;

/// Below this many paired observations a figure is "not enough data".
pub const MIN_N: usize = 5;

/// The 1-based ranks of `x`, ties sharing the mean of the ranks they occupy.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        // positions i..=j hold ranks i+1..=j+1
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            out[k] = r;
        }
        i = j + 1;
    }
    out
}

/// Pearson's correlation (None when either side is constant or there are < 2 pairs).
fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 || n != y.len() {
        return None;
    }
    let (mx, my) = (crate::text::mean(x), crate::text::mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Spearman's rho: Pearson's correlation of the (average) ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// Cohen's kappa of two raters' labels on the same items: (p_o - p_e) / (1 - p_e).
/// None for no items, or when chance agreement is already 1 (both raters always gave
/// one and the same label).
pub fn kappa<T: Eq + Hash>(pairs: &[(T, T)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let agree = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let mut left: HashMap<&T, f64> = HashMap::new();
    let mut right: HashMap<&T, f64> = HashMap::new();
    for (a, b) in pairs {
        *left.entry(a).or_default() += 1.0;
        *right.entry(b).or_default() += 1.0;
    }
    let chance: f64 = left
        .iter()
        .map(|(k, a)| a / n * right.get(k).copied().unwrap_or(0.0) / n)
        .sum();
    (chance < 1.0).then(|| (agree - chance) / (1.0 - chance))
}

/// One agreement figure with the number of observations behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub n: usize,
    pub value: Option<f64>,
}

impl Figure {
    pub fn new(n: usize, value: Option<f64>) -> Figure {
        Figure { n, value }
    }

    /// `0.62 (n=40)`, or why there is no figure.
    pub fn show(&self) -> String {
        match self.value {
            _ if self.n < MIN_N => format!("not enough data (n={})", self.n),
            // (no "-0.00" for a figure a rounding error below zero)
            Some(v) if v.abs() < 0.005 => format!("0.00 (n={})", self.n),
            Some(v) => format!("{v:.2} (n={})", self.n),
            None => format!("undefined: no variation (n={})", self.n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ties_take_average_ranks() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 30.0]), [1.0, 2.5, 2.5, 4.0]);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 3.0]), [3.0, 1.0, 3.0, 3.0]);
    }

    #[test]
    fn spearman_matches_hand_computed_values() {
        // Wikipedia's IQ / hours of TV example (no ties): rho = 1 - 6*194/(10*99) = -29/165.
        let iq = [106., 100., 86., 101., 99., 103., 97., 113., 112., 110.];
        let tv = [7., 27., 2., 50., 28., 29., 20., 12., 6., 17.];
        assert!(close(spearman(&iq, &tv).unwrap(), -29.0 / 165.0));
        // With ties: x = 1,2,2,3 (ranks 1,2.5,2.5,4), y = 1,3,2,4 (ranks 1,3,2,4).
        // Centred ranks: x -1.5,0,0,1.5; y -1.5,.5,-.5,1.5: sxy = 4.5, sxx = 4.5, syy = 5.
        let r = spearman(&[1., 2., 2., 3.], &[1., 3., 2., 4.]).unwrap();
        assert!(close(r, 4.5 / (4.5f64 * 5.0).sqrt()), "{r}");
        assert!(close(
            spearman(&[1., 2., 3.], &[30., 20., 10.]).unwrap(),
            -1.0
        ));
        assert_eq!(spearman(&[1., 1., 1.], &[1., 2., 3.]), None);
    }

    #[test]
    fn kappa_matches_textbook_examples() {
        // Wikipedia: 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15:
        // p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5, kappa = 0.4.
        let mut pairs = Vec::new();
        for (a, b, n) in [(1, 1, 20), (1, 0, 5), (0, 1, 10), (0, 0, 15)] {
            pairs.extend(std::iter::repeat_n((a, b), n));
        }
        assert!(close(kappa(&pairs).unwrap(), 0.4));
        // Wikipedia's second example: 45/15/25/15 of 100: p_o = 0.6, p_e = 0.54 -> 0.1304.
        let mut pairs = Vec::new();
        for (a, b, n) in [(1, 1, 45), (1, 0, 15), (0, 1, 25), (0, 0, 15)] {
            pairs.extend(std::iter::repeat_n((a, b), n));
        }
        assert!(close(kappa(&pairs).unwrap(), 0.06 / 0.46));
        // perfect agreement on varied labels is 1; one label on both sides is undefined
        assert_eq!(kappa(&[("a", "a"), ("b", "b"), ("c", "c")]), Some(1.0));
        assert_eq!(kappa(&[("a", "a"), ("a", "a")]), None);
        assert_eq!(kappa::<u8>(&[]), None);
    }

    #[test]
    fn figures_below_the_minimum_say_so() {
        assert_eq!(Figure::new(3, Some(1.0)).show(), "not enough data (n=3)");
        assert_eq!(Figure::new(12, Some(0.456)).show(), "0.46 (n=12)");
        assert!(Figure::new(12, None).show().starts_with("undefined"));
    }
}
