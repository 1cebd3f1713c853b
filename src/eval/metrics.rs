//! Threshold metrics from one sorted sweep over the scores.

use super::EvalError;

/// One operating point of a detector: the threshold and the two error rates it gives.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DetPoint {
    /// Accept when `score >= threshold`; `f64::INFINITY` for the point that rejects everything.
    pub threshold: f64,
    /// Share of target trials rejected (false-reject rate, FRR).
    pub p_miss: f64,
    /// Share of non-target trials accepted (false-accept rate, FAR).
    pub p_fa: f64,
}

/// The equal error rate and the threshold nearest to it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Eer {
    /// The ROC-convex-hull EER (see [`ScoreSet::eer`]), a fraction in `[0, 0.5]`.
    pub value: f64,
    /// The real threshold whose `max(P_miss, P_fa)` is smallest, i.e. the operational threshold closest to
    /// the EER.
    pub threshold: f64,
}

/// A chosen operating point with the value of the metric that chose it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OperatingPoint {
    /// The metric's value at this point (normalised DCF, or the FRR for [`ScoreSet::frr_at_far`]).
    pub value: f64,
    /// The threshold and error rates.
    pub point: DetPoint,
}

/// Parameters of the NIST detection cost function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DcfParams {
    /// Prior probability of a target trial.
    pub p_target: f64,
    /// Cost of a miss (false reject).
    pub c_miss: f64,
    /// Cost of a false accept.
    pub c_fa: f64,
}

impl Default for DcfParams {
    /// `P_target = 0.01`, `C_miss = C_fa = 1` (the operating point the project reports).
    fn default() -> Self {
        Self {
            p_target: 0.01,
            c_miss: 1.0,
            c_fa: 1.0,
        }
    }
}

impl DcfParams {
    fn validate(&self) -> Result<(), EvalError> {
        if !(self.p_target > 0.0 && self.p_target < 1.0) {
            return Err(EvalError::OutOfRange {
                name: "p_target",
                range: "(0, 1)",
                value: self.p_target,
            });
        }
        for (name, value) in [("c_miss", self.c_miss), ("c_fa", self.c_fa)] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(EvalError::OutOfRange {
                    name,
                    range: "(0, inf)",
                    value,
                });
            }
        }
        Ok(())
    }

    /// Normalised cost of the error rates: the DCF divided by the cost of the best trivial system
    /// (accept all or reject all), so 1.0 means "no better than not looking at the scores".
    fn normalised(&self, p_miss: f64, p_fa: f64) -> f64 {
        let weighted_miss = self.p_target * self.c_miss;
        let weighted_fa = (1.0 - self.p_target) * self.c_fa;
        (weighted_miss * p_miss + weighted_fa * p_fa) / weighted_miss.min(weighted_fa)
    }

    /// The Bayes decision threshold on a natural-log LLR: `ln((1 - P_t) C_fa / (P_t C_miss))`.
    fn bayes_threshold(&self) -> f64 {
        ((1.0 - self.p_target) * self.c_fa / (self.p_target * self.c_miss)).ln()
    }
}

/// Scores of target and non-target trials, swept once into all distinct operating points.
#[derive(Debug, Clone)]
pub struct ScoreSet {
    n_targets: usize,
    n_nontargets: usize,
    /// One point per distinct score (threshold = that score) plus the reject-all point, thresholds ascending.
    points: Vec<DetPoint>,
}

fn check_finite(scores: &[f64]) -> Result<(), EvalError> {
    match scores.iter().position(|s| !s.is_finite()) {
        Some(index) => Err(EvalError::NonFiniteScore {
            index,
            value: scores[index],
        }),
        None => Ok(()),
    }
}

impl ScoreSet {
    /// Sorts the scores of target and non-target trials (both non-empty, all finite).
    pub fn new(targets: &[f64], nontargets: &[f64]) -> Result<Self, EvalError> {
        if targets.is_empty() {
            return Err(EvalError::NoTargets);
        }
        if nontargets.is_empty() {
            return Err(EvalError::NoNonTargets);
        }
        check_finite(targets)?;
        check_finite(nontargets)?;
        let mut all: Vec<(f64, bool)> = targets
            .iter()
            .map(|&s| (s, true))
            .chain(nontargets.iter().map(|&s| (s, false)))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (n_t, n_n) = (targets.len(), nontargets.len());
        let mut points = Vec::with_capacity(all.len() + 1);
        // Threshold at the i-th distinct score: targets strictly below it are missed, non-targets at or
        // above it are accepted.
        let (mut misses, mut accepted_non) = (0usize, n_n);
        let mut i = 0;
        while i < all.len() {
            let threshold = all[i].0;
            points.push(DetPoint {
                threshold,
                p_miss: misses as f64 / n_t as f64,
                p_fa: accepted_non as f64 / n_n as f64,
            });
            while i < all.len() && all[i].0 == threshold {
                if all[i].1 {
                    misses += 1;
                } else {
                    accepted_non -= 1;
                }
                i += 1;
            }
        }
        points.push(DetPoint {
            threshold: f64::INFINITY,
            p_miss: 1.0,
            p_fa: 0.0,
        });
        Ok(Self {
            n_targets: n_t,
            n_nontargets: n_n,
            points,
        })
    }

    /// Number of target trials.
    pub fn n_targets(&self) -> usize {
        self.n_targets
    }

    /// Number of non-target trials.
    pub fn n_nontargets(&self) -> usize {
        self.n_nontargets
    }

    /// Every distinct operating point, thresholds ascending (`P_miss` rising, `P_fa` falling), from
    /// accept-all (`P_miss = 0, P_fa = 1`) to reject-all (`P_miss = 1, P_fa = 0`). These are the DET curve.
    pub fn det_points(&self) -> &[DetPoint] {
        &self.points
    }

    /// Equal error rate, **ROC convex hull** variant (ROCCH-EER, as in BOSARIS and the NIST SRE tools): the
    /// point where the convex hull of the (P_fa, P_miss) operating points crosses `P_miss = P_fa`. It
    /// equals the largest, over all priors, of the minimum Bayes error rate, and is never above the EER read
    /// by linear interpolation of the raw step curve. Perfect separation gives 0, identical score
    /// distributions 0.5.
    pub fn eer(&self) -> Eer {
        // Lower convex hull in (x = P_fa, y = P_miss), x ascending (Andrew's monotone chain). The points
        // come with x descending, so walk them backwards; ties in x keep the lower y.
        let mut hull: Vec<(f64, f64)> = Vec::new();
        for p in self.points.iter().rev() {
            let q = (p.p_fa, p.p_miss);
            while hull.len() >= 2 {
                let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
                let cross = (b.0 - a.0) * (q.1 - a.1) - (b.1 - a.1) * (q.0 - a.0);
                if cross <= 0.0 {
                    hull.pop();
                } else {
                    break;
                }
            }
            hull.push(q);
        }
        let mut value = 0.5;
        for w in hull.windows(2) {
            let ((x1, y1), (x2, y2)) = (w[0], w[1]);
            let (d1, d2) = (y1 - x1, y2 - x2);
            if d1 >= 0.0 && d2 <= 0.0 {
                value = if d1 == d2 {
                    x1
                } else {
                    x1 + d1 / (d1 - d2) * (x2 - x1)
                };
                break;
            }
        }
        let threshold = self
            .points
            .iter()
            .min_by(|a, b| a.p_miss.max(a.p_fa).total_cmp(&b.p_miss.max(b.p_fa)))
            .map_or(f64::INFINITY, |p| p.threshold);
        Eer { value, threshold }
    }

    /// Minimum normalised detection cost over all thresholds (see [`DcfParams`]); the value is in `[0, 1]`.
    pub fn min_dcf(&self, params: &DcfParams) -> Result<OperatingPoint, EvalError> {
        params.validate()?;
        let mut best = OperatingPoint {
            value: f64::INFINITY,
            point: self.points[0],
        };
        for p in &self.points {
            let value = params.normalised(p.p_miss, p.p_fa);
            if value < best.value {
                best = OperatingPoint { value, point: *p };
            }
        }
        Ok(best)
    }

    /// False-reject rate at the lowest threshold whose false-accept rate is at most `far` (in `[0, 1]`).
    pub fn frr_at_far(&self, far: f64) -> Result<OperatingPoint, EvalError> {
        if !(0.0..=1.0).contains(&far) {
            return Err(EvalError::OutOfRange {
                name: "far",
                range: "[0, 1]",
                value: far,
            });
        }
        // P_fa falls with the threshold and the last point has P_fa = 0, so the search always succeeds.
        let idx = self
            .points
            .partition_point(|p| p.p_fa > far * (1.0 + 1e-12));
        let point = self.points[idx.min(self.points.len() - 1)];
        Ok(OperatingPoint {
            value: point.p_miss,
            point,
        })
    }
}

/// `ln(1 + e^x)` without overflow.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Cllr, the log-likelihood-ratio cost, in **bits**, from **natural-log** LLRs:
/// `(mean_tar log2(1 + e^-llr) + mean_non log2(1 + e^llr)) / 2`. 0 is perfect, 1 is an uninformative
/// system that always says LLR 0; larger means badly calibrated.
pub fn cllr(target_llrs: &[f64], nontarget_llrs: &[f64]) -> Result<f64, EvalError> {
    if target_llrs.is_empty() {
        return Err(EvalError::NoTargets);
    }
    if nontarget_llrs.is_empty() {
        return Err(EvalError::NoNonTargets);
    }
    check_finite(target_llrs)?;
    check_finite(nontarget_llrs)?;
    let tar = target_llrs.iter().map(|&l| softplus(-l)).sum::<f64>() / target_llrs.len() as f64;
    let non =
        nontarget_llrs.iter().map(|&l| softplus(l)).sum::<f64>() / nontarget_llrs.len() as f64;
    Ok((tar + non) / (2.0 * std::f64::consts::LN_2))
}

/// Normalised detection cost of calibrated natural-log LLRs when deciding at the Bayes threshold
/// `ln((1 - P_t) C_fa / (P_t C_miss))` (accept when `llr >= threshold`). Compared with the minimum DCF it
/// shows what the calibration loses.
pub fn actual_dcf(
    target_llrs: &[f64],
    nontarget_llrs: &[f64],
    params: &DcfParams,
) -> Result<OperatingPoint, EvalError> {
    params.validate()?;
    if target_llrs.is_empty() {
        return Err(EvalError::NoTargets);
    }
    if nontarget_llrs.is_empty() {
        return Err(EvalError::NoNonTargets);
    }
    check_finite(target_llrs)?;
    check_finite(nontarget_llrs)?;
    let threshold = params.bayes_threshold();
    let p_miss =
        target_llrs.iter().filter(|&&l| l < threshold).count() as f64 / target_llrs.len() as f64;
    let p_fa = nontarget_llrs.iter().filter(|&&l| l >= threshold).count() as f64
        / nontarget_llrs.len() as f64;
    Ok(OperatingPoint {
        value: params.normalised(p_miss, p_fa),
        point: DetPoint {
            threshold,
            p_miss,
            p_fa,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Error rates at one threshold, counted directly.
    fn rates(tar: &[f64], non: &[f64], t: f64) -> (f64, f64) {
        let miss = tar.iter().filter(|&&s| s < t).count() as f64 / tar.len() as f64;
        let fa = non.iter().filter(|&&s| s >= t).count() as f64 / non.len() as f64;
        (miss, fa)
    }

    /// Every candidate threshold: each score and +inf.
    fn thresholds(tar: &[f64], non: &[f64]) -> Vec<f64> {
        let mut t: Vec<f64> = tar.iter().chain(non).copied().collect();
        t.push(f64::INFINITY);
        t
    }

    fn naive_min_dcf(tar: &[f64], non: &[f64], p: &DcfParams) -> f64 {
        thresholds(tar, non)
            .into_iter()
            .map(|t| {
                let (m, f) = rates(tar, non, t);
                (p.p_target * p.c_miss * m + (1.0 - p.p_target) * p.c_fa * f)
                    / (p.p_target * p.c_miss).min((1.0 - p.p_target) * p.c_fa)
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// ROCCH-EER as the maximum over priors of the minimum Bayes error rate (sampled on a fine prior
    /// grid; the function is concave and piecewise linear, so the grid maximum converges from below).
    fn naive_eer(tar: &[f64], non: &[f64]) -> f64 {
        let ts = thresholds(tar, non);
        let rs: Vec<(f64, f64)> = ts.iter().map(|&t| rates(tar, non, t)).collect();
        (0..=4000)
            .map(|k| {
                let pi = k as f64 / 4000.0;
                rs.iter()
                    .map(|&(m, f)| pi * m + (1.0 - pi) * f)
                    .fold(f64::INFINITY, f64::min)
            })
            .fold(0.0, f64::max)
    }

    fn naive_frr_at_far(tar: &[f64], non: &[f64], far: f64) -> f64 {
        let mut best_t = f64::INFINITY;
        for t in thresholds(tar, non) {
            let (_, f) = rates(tar, non, t);
            if f <= far && t < best_t {
                best_t = t;
            }
        }
        rates(tar, non, best_t).0
    }

    #[test]
    fn perfectly_separated() {
        let s = ScoreSet::new(&[0.8, 0.9, 0.7], &[0.1, 0.2, 0.3, 0.0]).unwrap();
        assert_eq!(s.eer().value, 0.0);
        assert!((0.3..=0.7).contains(&s.eer().threshold));
        assert_eq!(s.min_dcf(&DcfParams::default()).unwrap().value, 0.0);
        assert_eq!(s.frr_at_far(0.0).unwrap().value, 0.0);
        assert_eq!(s.frr_at_far(0.001).unwrap().point.threshold, 0.7);
    }

    #[test]
    fn fully_overlapping() {
        let s = ScoreSet::new(&[0.5; 10], &[0.5; 30]).unwrap();
        assert_eq!(s.eer().value, 0.5);
        assert_eq!(s.min_dcf(&DcfParams::default()).unwrap().value, 1.0);
        // No threshold accepts fewer than all non-targets except reject-all.
        assert_eq!(s.frr_at_far(0.01).unwrap().value, 1.0);
    }

    #[test]
    fn perfectly_reversed_is_half_on_the_hull() {
        // Every target below every non-target: the hull is the chance diagonal.
        let s = ScoreSet::new(&[0.0, 0.1], &[0.8, 0.9]).unwrap();
        assert!((s.eer().value - 0.5).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_small_list() {
        // targets 0.9 0.8 0.4, non-targets 0.7 0.3 0.2 0.1.
        // Points (P_fa, P_miss): t=0.1 (1,0); 0.2 (3/4,0); 0.3 (1/2,0); 0.4 (1/4,0); 0.7 (1/4,1/3);
        // 0.8 (0,1/3); 0.9 (0,2/3); inf (0,1). Hull: (0,1/3) -> (1/4,0); crossing at
        // x = 1/3 / (1/3 + 1/4) * 1/4 = 1/7.
        let s = ScoreSet::new(&[0.9, 0.8, 0.4], &[0.7, 0.3, 0.2, 0.1]).unwrap();
        assert!((s.eer().value - 1.0 / 7.0).abs() < 1e-12, "{:?}", s.eer());
        assert_eq!(s.det_points().len(), 8);
        // P_t = 0.5: DCF = (m + f) / 2 / 0.5 = m + f; best is 1/4 (t = 0.4) or 1/3 (t = 0.8).
        let half = DcfParams {
            p_target: 0.5,
            c_miss: 1.0,
            c_fa: 1.0,
        };
        let d = s.min_dcf(&half).unwrap();
        assert!((d.value - 0.25).abs() < 1e-12);
        assert_eq!(d.point.threshold, 0.4);
        // FAR <= 0: lowest threshold with no false accept is 0.8, where 1 of 3 targets is missed.
        let f = s.frr_at_far(0.0).unwrap();
        assert_eq!(f.point.threshold, 0.8);
        assert!((f.value - 1.0 / 3.0).abs() < 1e-12);
        // FAR <= 0.25 is reached at 0.4 with no miss.
        assert_eq!(s.frr_at_far(0.25).unwrap().value, 0.0);
    }

    #[test]
    fn matches_brute_force_on_random_data() {
        let mut rng = StdRng::seed_from_u64(7);
        for case in 0..40 {
            let n_t = rng.random_range(1..60);
            let n_n = rng.random_range(1..200);
            let sep: f64 = rng.random_range(0.0..3.0);
            // Coarse rounding in some cases to produce ties.
            let q = if case % 3 == 0 { 4.0 } else { 1e6 };
            let draw = |rng: &mut StdRng, mu: f64| {
                let v: f64 = (0..4).map(|_| rng.random_range(-1.0..1.0)).sum::<f64>() + mu;
                (v * q).round() / q
            };
            let tar: Vec<f64> = (0..n_t).map(|_| draw(&mut rng, sep)).collect();
            let non: Vec<f64> = (0..n_n).map(|_| draw(&mut rng, 0.0)).collect();
            let s = ScoreSet::new(&tar, &non).unwrap();
            let eer = s.eer().value;
            let oracle = naive_eer(&tar, &non);
            assert!(
                eer >= oracle - 1e-9 && eer - oracle < 2e-3,
                "case {case}: eer {eer} vs {oracle}"
            );
            // The EER threshold is the real threshold with the smallest max(P_miss, P_fa).
            let (m, f) = rates(&tar, &non, s.eer().threshold);
            let best = thresholds(&tar, &non)
                .into_iter()
                .map(|t| {
                    let (m, f) = rates(&tar, &non, t);
                    m.max(f)
                })
                .fold(f64::INFINITY, f64::min);
            assert!((m.max(f) - best).abs() < 1e-12);
            assert!(eer <= best + 1e-12);
            for p in [
                DcfParams::default(),
                DcfParams {
                    p_target: 0.5,
                    c_miss: 1.0,
                    c_fa: 1.0,
                },
                DcfParams {
                    p_target: 0.05,
                    c_miss: 10.0,
                    c_fa: 1.0,
                },
            ] {
                let d = s.min_dcf(&p).unwrap();
                assert!(
                    (d.value - naive_min_dcf(&tar, &non, &p)).abs() < 1e-12,
                    "case {case}"
                );
                let (m, f) = rates(&tar, &non, d.point.threshold);
                assert_eq!((m, f), (d.point.p_miss, d.point.p_fa));
            }
            for far in [0.0, 0.001, 0.01, 0.1, 0.5, 1.0] {
                let got = s.frr_at_far(far).unwrap().value;
                assert_eq!(
                    got,
                    naive_frr_at_far(&tar, &non, far),
                    "case {case} far {far}"
                );
            }
        }
    }

    #[test]
    fn det_points_are_monotone_and_span_the_square() {
        let s = ScoreSet::new(&[1.0, 2.0, 2.0, 5.0], &[0.0, 2.0, 3.0]).unwrap();
        let p = s.det_points();
        assert_eq!((p[0].p_miss, p[0].p_fa), (0.0, 1.0));
        assert_eq!((p[p.len() - 1].p_miss, p[p.len() - 1].p_fa), (1.0, 0.0));
        for w in p.windows(2) {
            assert!(w[0].threshold < w[1].threshold);
            assert!(w[0].p_miss <= w[1].p_miss && w[0].p_fa >= w[1].p_fa);
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            ScoreSet::new(&[], &[1.0]),
            Err(EvalError::NoTargets)
        ));
        assert!(matches!(
            ScoreSet::new(&[1.0], &[]),
            Err(EvalError::NoNonTargets)
        ));
        assert!(matches!(
            ScoreSet::new(&[1.0, f64::NAN], &[0.0]),
            Err(EvalError::NonFiniteScore { index: 1, .. })
        ));
        let s = ScoreSet::new(&[1.0], &[0.0]).unwrap();
        assert!(s.frr_at_far(1.5).is_err());
        assert!(s.frr_at_far(-0.1).is_err());
        assert!(
            s.min_dcf(&DcfParams {
                p_target: 0.0,
                c_miss: 1.0,
                c_fa: 1.0
            })
            .is_err()
        );
        assert!(cllr(&[f64::INFINITY], &[0.0]).is_err());
    }

    #[test]
    fn cllr_known_values() {
        // LLR 0 everywhere carries no information: exactly 1 bit.
        assert!((cllr(&[0.0, 0.0], &[0.0]).unwrap() - 1.0).abs() < 1e-12);
        // Confident and right: near 0; confident and wrong: large.
        assert!(cllr(&[50.0], &[-50.0]).unwrap() < 1e-20);
        assert!(cllr(&[-50.0], &[50.0]).unwrap() > 70.0);
        // Hand value: tar llr ln 3 -> log2(1 + 1/3); non llr -ln 3 -> same. Cllr = log2(4/3).
        let l = 3f64.ln();
        assert!((cllr(&[l], &[-l]).unwrap() - (4.0f64 / 3.0).log2()).abs() < 1e-12);
        // Huge LLRs must not overflow.
        assert!(cllr(&[1e308], &[-1e308]).unwrap().is_finite());
    }

    #[test]
    fn actual_dcf_uses_the_bayes_threshold() {
        let p = DcfParams::default();
        let theta = (99.0f64).ln();
        // One target just above, one just below; non-targets all below.
        let a = actual_dcf(&[theta + 0.1, theta - 0.1], &[0.0, -3.0], &p).unwrap();
        assert!((a.point.threshold - theta).abs() < 1e-12);
        assert_eq!((a.point.p_miss, a.point.p_fa), (0.5, 0.0));
        assert!((a.value - 0.5).abs() < 1e-12);
        // Scores that are never above the threshold give the reject-all cost, 1.
        assert!((actual_dcf(&[0.0], &[0.0], &p).unwrap().value - 1.0).abs() < 1e-12);
    }
}
