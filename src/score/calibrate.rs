//! Fitting the calibration: prior-weighted logistic regression of labelled trial scores
//! (Brümmer's linear calibration), by Newton's method on two parameters.

use super::ScoreError;

/// The outcome of [`fit_calibration`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibrationFit {
    /// `llr = slope · score + offset`.
    pub slope: f64,
    /// See `slope`.
    pub offset: f64,
    /// Mean of the non-target scores.
    pub nontarget_mean: f64,
    /// Standard deviation of the non-target scores.
    pub nontarget_std: f64,
}

/// Fits `llr = slope · score + offset` to target and non-target scores.
///
/// The objective is the prior-weighted cross-entropy at effective target prior `prior`
/// (0.5 minimises Cllr), so the two classes count by their prior, not by how many trials each has.
pub fn fit_calibration(
    targets: &[f64],
    nontargets: &[f64],
    prior: f64,
) -> Result<CalibrationFit, ScoreError> {
    if targets.len() < 2 || nontargets.len() < 2 {
        return Err(ScoreError::Calibration {
            path: "<trials>".into(),
            message: format!(
                "need at least 2 target and 2 non-target scores, got {} and {}",
                targets.len(),
                nontargets.len()
            ),
        });
    }
    if !(prior > 0.0 && prior < 1.0) {
        return Err(ScoreError::InvalidFar(prior));
    }
    let logit_prior = (prior / (1.0 - prior)).ln();
    let wt = prior / targets.len() as f64;
    let wn = (1.0 - prior) / nontargets.len() as f64;
    // Fit on standardised scores so Newton's method starts well-conditioned whatever the score range.
    let all = targets.iter().chain(nontargets);
    let count = (targets.len() + nontargets.len()) as f64;
    let centre = all.clone().sum::<f64>() / count;
    let scale = (all.map(|s| (s - centre).powi(2)).sum::<f64>() / count)
        .sqrt()
        .max(1e-12);
    let z = |s: f64| (s - centre) / scale;
    let objective = |a: f64, b: f64| -> f64 {
        let softplus = |x: f64| if x > 30.0 { x } else { x.exp().ln_1p() };
        targets
            .iter()
            .map(|&s| wt * softplus(-(a * z(s) + b + logit_prior)))
            .sum::<f64>()
            + nontargets
                .iter()
                .map(|&s| wn * softplus(a * z(s) + b + logit_prior))
                .sum::<f64>()
    };
    let (mut a, mut b) = (1.0f64, 0.0f64);
    let mut current = objective(a, b);
    for _ in 0..100 {
        // Gradient and Hessian of Σ w·log(1 + exp(−y·(a·s + b + logit_prior))), y = ±1.
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut accumulate = |s: f64, y: f64, w: f64| {
            let s = z(s);
            let x = y * (a * s + b + logit_prior);
            let sig = 1.0 / (1.0 + x.exp()); // σ(−x)
            let g = -w * y * sig;
            ga += g * s;
            gb += g;
            let h = w * sig * (1.0 - sig);
            haa += h * s * s;
            hab += h * s;
            hbb += h;
        };
        targets.iter().for_each(|&s| accumulate(s, 1.0, wt));
        nontargets.iter().for_each(|&s| accumulate(s, -1.0, wn));
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-300 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        // Damped Newton: halve the step until the objective does not increase.
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            let (na, nb) = (a - step * da, b - step * db);
            let value = objective(na, nb);
            if value.is_finite() && value <= current {
                (a, b, current) = (na, nb, value);
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted || (step * da).abs() < 1e-10 && (step * db).abs() < 1e-10 {
            break;
        }
    }
    // Back to the original score scale.
    let (a, b) = (a / scale, b - a * centre / scale);
    if !(a.is_finite() && b.is_finite()) {
        return Err(ScoreError::Calibration {
            path: "<trials>".into(),
            message: "logistic regression did not converge (classes perfectly separated?)".into(),
        });
    }
    let n = nontargets.len() as f64;
    let mean = nontargets.iter().sum::<f64>() / n;
    let std = (nontargets.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    Ok(CalibrationFit {
        slope: a,
        offset: b,
        nontarget_mean: mean,
        nontarget_std: std.max(1e-6),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Scores drawn from two Gaussians with equal variance σ² and means μ₁, μ₀ have the exact LLR
    /// `(μ₁ − μ₀)/σ² · s − (μ₁² − μ₀²)/(2σ²)`: the fit must recover it.
    #[test]
    fn recovers_the_gaussian_llr() {
        let n = 20_000;
        // Deterministic normal quantiles instead of random draws.
        let q = |i: usize| super::super::probit((i as f64 + 0.5) / n as f64);
        let targets: Vec<f64> = (0..n).map(|i| 2.0 + q(i)).collect();
        let nontargets: Vec<f64> = (0..n).map(q).collect();
        let fit = fit_calibration(&targets, &nontargets, 0.5).unwrap();
        assert!((fit.slope - 2.0).abs() < 0.02, "{fit:?}");
        assert!((fit.offset + 2.0).abs() < 0.02, "{fit:?}");
        assert!(fit.nontarget_mean.abs() < 1e-3 && (fit.nontarget_std - 1.0).abs() < 0.01);
    }

    #[test]
    fn rejects_degenerate_input() {
        assert!(fit_calibration(&[1.0], &[0.0, 0.1], 0.5).is_err());
        assert!(fit_calibration(&[1.0, 2.0], &[0.0, 0.1], 1.5).is_err());
    }
}
