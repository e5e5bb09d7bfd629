//! keel-server (placeholder).
