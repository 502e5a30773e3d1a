//! Metric handles for the request path, looked up once per thread.
//!
//! `metrics::counter!(name, labels)` builds a key (allocating its labels) and looks it up in
//! the recorder's registry on every call: four such calls were a few per cent of the
//! ingress's CPU per event. Here a thread keeps the handle it got the first time, keyed by the
//! addresses of its `'static` name and label strings (two copies of one literal at different
//! addresses make two entries for the same metric: harmless).

use std::cell::RefCell;
use std::collections::HashMap;

use metrics::{Counter, Histogram, Label};

#[derive(PartialEq, Eq, Hash)]
struct Key(usize, Vec<(usize, usize)>);

fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    Key(
        name.as_ptr() as usize,
        labels
            .iter()
            .map(|(k, v)| (k.as_ptr() as usize, v.as_ptr() as usize))
            .collect(),
    )
}

fn owned(labels: &[(&'static str, &'static str)]) -> Vec<Label> {
    labels.iter().map(|(k, v)| Label::new(*k, *v)).collect()
}

thread_local! {
    static COUNTERS: RefCell<HashMap<Key, Counter>> = RefCell::new(HashMap::new());
    static HISTOGRAMS: RefCell<HashMap<Key, Histogram>> = RefCell::new(HashMap::new());
}

/// Adds `n` to the counter `name` with `labels`.
pub fn count(name: &'static str, labels: &[(&'static str, &'static str)], n: u64) {
    COUNTERS.with(|c| {
        let mut c = c.borrow_mut();
        c.entry(key(name, labels))
            .or_insert_with(|| metrics::counter!(name, owned(labels)))
            .increment(n);
    });
}

/// Records `value` in the histogram `name` with `labels`.
pub fn record(name: &'static str, labels: &[(&'static str, &'static str)], value: f64) {
    HISTOGRAMS.with(|h| {
        let mut h = h.borrow_mut();
        h.entry(key(name, labels))
            .or_insert_with(|| metrics::histogram!(name, owned(labels)))
            .record(value);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_count_into_the_registered_metric() {
        let handle = crate::telemetry::metrics_handle().expect("the recorder installs");
        for _ in 0..3 {
            count("meter_test_total", &[("kind", "a"), ("outcome", "ok")], 1);
        }
        count("meter_test_total", &[("kind", "b"), ("outcome", "ok")], 5);
        record("meter_test_seconds", &[("kind", "a")], 0.25);
        let text = handle.render();
        assert!(
            text.contains("meter_test_total{kind=\"a\",outcome=\"ok\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("meter_test_total{kind=\"b\",outcome=\"ok\"} 5"),
            "{text}"
        );
        assert!(text.contains("meter_test_seconds"), "{text}");
    }
}
