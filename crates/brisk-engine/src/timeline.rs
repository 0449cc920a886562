//! Startup timeline: when the process started, when it listened, and when
//! each model began and finished loading, in milliseconds since start.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// Milliseconds since the process started.
    pub at_ms: f64,
    /// `server` for process-wide events, else the model name.
    pub subject: String,
    pub event: String,
}

/// Cheap to clone; clones share the event list.
#[derive(Clone)]
pub struct Timeline {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Timeline {
    /// `start` should be taken as early as possible in `main`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            events: Arc::default(),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn record(&self, subject: &str, event: &str) {
        let at_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        self.events.lock().push(Event {
            at_ms,
            subject: subject.to_string(),
            event: event.to_string(),
        });
    }

    /// Records `event` only the first time it happens for `subject`.
    pub fn record_once(&self, subject: &str, event: &str) {
        let mut events = self.events.lock();
        if !events
            .iter()
            .any(|e| e.subject == subject && e.event == event)
        {
            let at_ms = self.start.elapsed().as_secs_f64() * 1000.0;
            events.push(Event {
                at_ms,
                subject: subject.to_string(),
                event: event.to_string(),
            });
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_and_once() {
        let t = Timeline::new(Instant::now());
        t.record("server", "listening");
        t.record_once("server", "ready");
        t.record_once("server", "ready");
        let ev = t.events();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].event, "ready");
        assert!(ev[0].at_ms <= ev[1].at_ms);
    }
}
