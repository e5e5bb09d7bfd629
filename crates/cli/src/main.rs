//! `keel`: run a node, talk to a cluster, inspect a WAL, or try the demo.
//!
//! Exit codes: 0 success; 1 the operation failed (and changed nothing) or the key
//! was not found; 2 bad usage; 3 a write's outcome is unknown (it may have been
//! applied); 4 a transaction's comparisons did not hold (its `--else` branch was
//! applied).

include!("cli.rs");
