//! The latency book: pairs accept and finish instants by run id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Default)]
struct Pages {
    accepted: HashMap<String, Instant>,
    finished: HashMap<String, Instant>,
    samples_us: Vec<u64>,
}

/// Whichever of accept and finish arrives second records the sample.
#[derive(Default)]
pub struct Book {
    inner: Mutex<Pages>,
}

impl Book {
    pub fn accepted(&self, id: String, at: Instant) {
        let mut p = self.inner.lock().unwrap();
        match p.finished.remove(&id) {
            Some(fin) => p
                .samples_us
                .push(fin.saturating_duration_since(at).as_micros() as u64),
            None => {
                p.accepted.insert(id, at);
            }
        }
    }
    pub fn finished(&self, id: String, at: Instant) {
        let mut p = self.inner.lock().unwrap();
        match p.accepted.remove(&id) {
            Some(acc) => p
                .samples_us
                .push(at.saturating_duration_since(acc).as_micros() as u64),
            None => {
                p.finished.insert(id, at);
            }
        }
    }
    pub fn samples(&self) -> Vec<u64> {
        self.inner.lock().unwrap().samples_us.clone()
    }
}
