//! keel-storage (placeholder).
