//! `keel-test-bugs`: the `keel` binary built with the `test-bugs` feature, so that
//! `KEEL_TEST_BUG=NAME keel-test-bugs serve ...` runs a deliberately broken node
//! (see `keel_server::test_bugs` and docs/chaos.md). Never shipped: the normal
//! `keel` binary refuses to start when `KEEL_TEST_BUG` is set.

include!("cli.rs");
