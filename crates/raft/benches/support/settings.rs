//! The criterion settings of every keel micro-benchmark. keel-storage's benches
//! include this file too (through `#[path]`), so that all of them sample alike.

use std::time::Duration;

use criterion::Criterion;

/// Modest sampling, because the project machine has two cores shared with other
/// people's builds and a whole bench should take a minute or two: 20 samples
/// over 3 s after 1 s of warm-up, and no plots (criterion is built without them).
pub fn modest() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
}
