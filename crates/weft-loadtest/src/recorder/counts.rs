//! The counting parts of the recorder: outcomes, per-(phase, step) accumulators and
//! histogram helpers, kept apart from the recorder's bookkeeping of phases and seconds.

use crate::client::Failure;
use crate::report::{Counts, Latency};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};

/// Longest latency a histogram holds (longer ones are clamped): one hour, in µs.
pub(crate) const MAX_US: u64 = 3_600_000_000;

pub(crate) fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, sigfig).expect("static histogram bounds are valid")
}

/// How a request ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Status(u16),
    Failed(Failure),
}

impl Outcome {
    pub(crate) fn ok(self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(&s))
    }
    pub(crate) fn key(self) -> u16 {
        match self {
            Outcome::Status(s) => s,
            Outcome::Failed(Failure::Timeout) => 0,
            Outcome::Failed(Failure::Connect) => 1,
            Outcome::Failed(Failure::Io) => 2,
        }
    }
}

pub(crate) fn key_name(k: u16) -> String {
    match k {
        0 => Failure::Timeout.as_str().into(),
        1 => Failure::Connect.as_str().into(),
        2 => Failure::Io.as_str().into(),
        s => s.to_string(),
    }
}

pub(crate) struct Acc {
    pub(crate) planned: u64,
    pub(crate) sent: u64,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) dropped: u64,
    pub(crate) skipped: u64,
    pub(crate) by_status: HashMap<u16, u64>,
    pub(crate) hist: Histogram<u64>,
}

impl Acc {
    pub(crate) fn new() -> Self {
        Self {
            planned: 0,
            sent: 0,
            ok: 0,
            errors: 0,
            dropped: 0,
            skipped: 0,
            by_status: HashMap::new(),
            hist: histogram(3),
        }
    }

    pub(crate) fn add(&mut self, o: &Acc) {
        self.planned += o.planned;
        self.sent += o.sent;
        self.ok += o.ok;
        self.errors += o.errors;
        self.dropped += o.dropped;
        self.skipped += o.skipped;
        for (k, v) in &o.by_status {
            *self.by_status.entry(*k).or_default() += v;
        }
        let _ = self.hist.add(&o.hist);
    }

    pub(crate) fn counts(&self, seconds: f64) -> Counts {
        Counts {
            planned: self.planned,
            sent: self.sent,
            ok: self.ok,
            errors: self.errors,
            dropped: self.dropped,
            skipped: self.skipped,
            error_rate_pct: if self.sent == 0 {
                0.0
            } else {
                100.0 * self.errors as f64 / self.sent as f64
            },
            throughput_rps: if seconds > 0.0 {
                self.sent as f64 / seconds
            } else {
                0.0
            },
            by_status: self
                .by_status
                .iter()
                .map(|(k, v)| (key_name(*k), *v))
                .collect::<BTreeMap<_, _>>(),
            latency: latency(&self.hist),
        }
    }
}

/// Percentiles of a µs histogram, in ms.
pub(crate) fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Latency {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}
