//! When each arrival is due: the open-loop plan, computed from the clock alone and never
//! from how fast the server answers.
//!
//! Within a phase the rate changes linearly from `a` to `b` over `D` seconds, so the number
//! of arrivals by time `t` is `N(t) = a*t + (b-a)*t^2/(2D)`; arrival `k` is due at the `t`
//! where `N(t) = k`. Solving that exactly (instead of adding up 1/rate steps) keeps a long
//! test free of drift.

use super::Scenario;
use std::time::Duration;

/// Iterates over the arrivals of a scenario: (offset from the test start, phase index).
#[derive(Debug, Clone)]
pub struct Schedule {
    phases: Vec<(f64, f64, f64)>,
    phase: usize,
    phase_start: f64,
    k: u64,
}

impl Schedule {
    /// The plan of `scenario`'s phases.
    pub fn new(scenario: &Scenario) -> Self {
        Self {
            phases: scenario
                .phases
                .iter()
                .map(|p| {
                    let (a, b) = p.rates();
                    (a, b, p.duration.as_secs_f64())
                })
                .collect(),
            phase: 0,
            phase_start: 0.0,
            k: 0,
        }
    }

    /// Seconds into phase `(a, b, d)` at which arrival `k` is due.
    fn due(a: f64, b: f64, d: f64, k: f64) -> f64 {
        let half_slope = (b - a) / (2.0 * d);
        if half_slope.abs() < 1e-12 {
            return k / a;
        }
        // half_slope*t^2 + a*t - k = 0, the root that is >= 0.
        let disc = a * a + 4.0 * half_slope * k;
        if disc < 0.0 {
            return f64::INFINITY;
        }
        (-a + disc.sqrt()) / (2.0 * half_slope)
    }
}

impl Iterator for Schedule {
    type Item = (Duration, usize);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let &(a, b, d) = self.phases.get(self.phase)?;
            // A ramp from 0 starts its first arrival once one arrival's worth has accrued.
            let k = if a == 0.0 { self.k + 1 } else { self.k };
            let t = Self::due(a, b, d, k as f64);
            if t.is_finite() && t < d {
                self.k += 1;
                return Some((Duration::from_secs_f64(self.phase_start + t), self.phase));
            }
            self.phase_start += d;
            self.phase += 1;
            self.k = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(phases: &str) -> Scenario {
        Scenario::from_yaml(&format!(
            "steps: [{{kind: request, path: /health}}]\nphases: {phases}"
        ))
        .unwrap()
    }

    #[test]
    fn constant_and_ramp_phases_send_the_planned_number_in_order() {
        let s = scenario(
            "[{rate: 100, duration: 2s}, {from: 0, to: 200, duration: 1s}, {from: 50, to: 10, duration: 2s}]",
        );
        let all: Vec<_> = Schedule::new(&s).collect();
        let per_phase = |i| all.iter().filter(|(_, p)| *p == i).count();
        assert_eq!(per_phase(0), 200);
        // Mean rate 100/s over 1 s, and 30/s over 2 s; within one arrival.
        assert!((99..=101).contains(&per_phase(1)), "{}", per_phase(1));
        assert!((59..=61).contains(&per_phase(2)), "{}", per_phase(2));
        assert!(
            all.windows(2).all(|w| w[0].0 <= w[1].0),
            "arrivals out of order"
        );
        assert!(all.last().unwrap().0 < Duration::from_secs(5));
        // A rising ramp is denser at its end than at its start.
        let ramp: Vec<f64> = all
            .iter()
            .filter(|(_, p)| *p == 1)
            .map(|(t, _)| t.as_secs_f64() - 2.0)
            .collect();
        assert!(
            ramp.iter().filter(|t| **t >= 0.5).count()
                > 2 * ramp.iter().filter(|t| **t < 0.5).count()
        );
    }
}
