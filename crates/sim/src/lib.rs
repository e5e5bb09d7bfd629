//! keel-sim (placeholder).
