//! keel-client (placeholder).
