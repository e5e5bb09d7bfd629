//! keel-bench (placeholder).
