//! Where results accumulate while a test runs: per (phase, step) counts and HDR histograms,
//! one-second timeline buckets and the generator's send lag. The connection tasks share one
//! recorder behind a mutex: at 20,000 requests/s a record is ~100 ns under the lock, and one
//! place makes the live progress line and the final report agree. The schedule thread
//! counts into a recorder of its own, merged at the end, so it never waits on that lock.

mod counts;

pub(crate) use counts::{Outcome, histogram, latency};

use crate::report::{Counts, Latency, PhaseStats, StepStats, TimelinePoint};
use crate::scenario::Scenario;
use counts::{Acc, MAX_US, key_name};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

struct Second {
    phase: usize,
    sent: u64,
    errors: u64,
    dropped: u64,
    hist: Histogram<u64>,
}

/// One finished request.
pub(crate) struct Done {
    pub(crate) phase: usize,
    pub(crate) step: usize,
    /// Its intended send time, from the test start.
    pub(crate) at: Duration,
    /// Intended send -> answer read.
    pub(crate) latency: Duration,
    /// Intended send -> request handed to its connection.
    pub(crate) lag: Duration,
    pub(crate) outcome: Outcome,
}

/// Everything measured so far.
pub(crate) struct Recorder {
    /// [phase][step].
    accs: Vec<Vec<Acc>>,
    timeline: Vec<Second>,
    send_lag: Histogram<u64>,
    schedule_lag: Histogram<u64>,
    late: u64,
}

/// What the live progress line shows.
pub(crate) struct Live {
    pub(crate) sent: u64,
    pub(crate) errors: u64,
    pub(crate) dropped: u64,
    pub(crate) last_second_rps: u64,
    pub(crate) last_second_p99_ms: f64,
}

impl Recorder {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        Self {
            accs: scenario
                .phases
                .iter()
                .map(|_| scenario.steps.iter().map(|_| Acc::new()).collect())
                .collect(),
            timeline: Vec::new(),
            send_lag: histogram(3),
            schedule_lag: histogram(3),
            late: 0,
        }
    }

    fn second(&mut self, s: usize, phase: usize) -> &mut Second {
        while self.timeline.len() <= s {
            self.timeline.push(Second {
                phase,
                sent: 0,
                errors: 0,
                dropped: 0,
                hist: histogram(2),
            });
        }
        let sec = &mut self.timeline[s];
        sec.phase = sec.phase.max(phase);
        sec
    }

    /// An arrival the schedule planned, queued `lag` after its due time; `dropped` when
    /// the in-flight cap refused it.
    pub(crate) fn planned(
        &mut self,
        phase: usize,
        step: usize,
        at: Duration,
        lag: Duration,
        dropped: bool,
    ) {
        self.schedule_lag
            .saturating_record((lag.as_micros() as u64).clamp(1, MAX_US));
        let a = &mut self.accs[phase][step];
        a.planned += 1;
        if dropped {
            a.dropped += 1;
            self.second(at.as_secs() as usize, phase).dropped += 1;
        }
    }

    /// A `get_run` arrival with no run to read yet.
    pub(crate) fn skipped(&mut self, phase: usize, step: usize) {
        self.accs[phase][step].skipped += 1;
    }

    /// A finished request.
    pub(crate) fn done(&mut self, d: Done) {
        let Done {
            phase,
            step,
            at,
            latency,
            lag,
            outcome,
        } = d;
        let late_after = crate::generator::LATE_AFTER;
        let us = (latency.as_micros() as u64).clamp(1, MAX_US);
        let ok = outcome.ok();
        let a = &mut self.accs[phase][step];
        a.sent += 1;
        if ok {
            a.ok += 1
        } else {
            a.errors += 1
        }
        *a.by_status.entry(outcome.key()).or_default() += 1;
        a.hist.saturating_record(us);
        self.send_lag
            .saturating_record((lag.as_micros() as u64).clamp(1, MAX_US));
        if lag > late_after {
            self.late += 1;
        }
        let sec = self.second(at.as_secs() as usize, phase);
        sec.sent += 1;
        if !ok {
            sec.errors += 1;
        }
        sec.hist.saturating_record(us);
    }

    pub(crate) fn live(&self, now: Duration) -> Live {
        let mut l = Live {
            sent: 0,
            errors: 0,
            dropped: 0,
            last_second_rps: 0,
            last_second_p99_ms: 0.0,
        };
        for a in self.accs.iter().flatten() {
            l.sent += a.sent;
            l.errors += a.errors;
            l.dropped += a.dropped;
        }
        // The last complete second.
        if let Some(s) = (now.as_secs() as usize)
            .checked_sub(1)
            .and_then(|i| self.timeline.get(i))
        {
            l.last_second_rps = s.sent;
            l.last_second_p99_ms = if s.hist.is_empty() {
                0.0
            } else {
                s.hist.value_at_quantile(0.99) as f64 / 1000.0
            };
        }
        l
    }

    /// The report's measured parts; `seconds` is the measured span.
    pub(crate) fn build(&self, scenario: &Scenario, seconds: f64) -> Built {
        let mut total = Acc::new();
        let mut per_step: Vec<Acc> = scenario.steps.iter().map(|_| Acc::new()).collect();
        let mut phases = Vec::new();
        let mut start_s = 0.0;
        for (pi, p) in scenario.phases.iter().enumerate() {
            let mut phase_acc = Acc::new();
            let dur = p.duration.as_secs_f64().min((seconds - start_s).max(0.0));
            let mut steps = Vec::new();
            for (si, s) in scenario.steps.iter().enumerate() {
                let a = &self.accs[pi][si];
                phase_acc.add(a);
                per_step[si].add(a);
                steps.push(StepStats {
                    name: s.name.clone(),
                    kind: s.kind.as_str().into(),
                    counts: a.counts(dur),
                });
            }
            total.add(&phase_acc);
            let (from, to) = p.rates();
            phases.push(PhaseStats {
                name: p.name.clone(),
                rate_from: from,
                rate_to: to,
                start_s,
                duration_s: p.duration.as_secs_f64(),
                counts: phase_acc.counts(dur),
                steps,
            });
            start_s += p.duration.as_secs_f64();
        }
        let steps = scenario
            .steps
            .iter()
            .zip(&per_step)
            .map(|(s, a)| StepStats {
                name: s.name.clone(),
                kind: s.kind.as_str().into(),
                counts: a.counts(seconds),
            })
            .collect();
        let timeline = self
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let l = latency(&s.hist);
                TimelinePoint {
                    t_s: i as u32,
                    phase: s.phase,
                    sent: s.sent,
                    errors: s.errors,
                    dropped: s.dropped,
                    p50_ms: l.p50,
                    p99_ms: l.p99,
                    max_ms: l.max,
                }
            })
            .collect();
        Built {
            totals: total.counts(seconds),
            steps,
            phases,
            timeline,
            send_lag: latency(&self.send_lag),
            schedule_lag: latency(&self.schedule_lag),
            late: self.late,
        }
    }
}

/// [`Recorder::build`]'s result.
pub(crate) struct Built {
    pub(crate) totals: Counts,
    pub(crate) steps: Vec<StepStats>,
    pub(crate) phases: Vec<PhaseStats>,
    pub(crate) timeline: Vec<TimelinePoint>,
    pub(crate) send_lag: Latency,
    pub(crate) schedule_lag: Latency,
    pub(crate) late: u64,
}

impl Recorder {
    /// A job that was admitted but never sent because the test ended early.
    pub(crate) fn planned_unsent(&mut self, phase: usize, step: usize, at: Duration) {
        self.accs[phase][step].dropped += 1;
        self.second(at.as_secs() as usize, phase).dropped += 1;
    }
}

impl Recorder {
    /// `"503 x12, connect x40"` over the whole test so far, and the number sent.
    pub(crate) fn status_summary(&self) -> (String, u64) {
        let mut all: BTreeMap<u16, u64> = BTreeMap::new();
        let mut sent = 0;
        for a in self.accs.iter().flatten() {
            sent += a.sent;
            for (k, v) in &a.by_status {
                *all.entry(*k).or_default() += v;
            }
        }
        let text: Vec<String> = all
            .iter()
            .map(|(k, v)| format!("{} x{v}", key_name(*k)))
            .collect();
        (
            if text.is_empty() {
                "no answers".into()
            } else {
                text.join(", ")
            },
            sent,
        )
    }
}

impl Recorder {
    /// Adds another recorder of the same scenario (the schedule thread's) into this one.
    pub(crate) fn merge(&mut self, other: Recorder) {
        for (mine, theirs) in self
            .accs
            .iter_mut()
            .flatten()
            .zip(other.accs.iter().flatten())
        {
            mine.add(theirs);
        }
        for (i, s) in other.timeline.into_iter().enumerate() {
            let sec = self.second(i, s.phase);
            sec.sent += s.sent;
            sec.errors += s.errors;
            sec.dropped += s.dropped;
            let _ = sec.hist.add(&s.hist);
        }
        let _ = self.send_lag.add(&other.send_lag);
        let _ = self.schedule_lag.add(&other.schedule_lag);
        self.late += other.late;
    }
}
