//! keel-proto (placeholder).
