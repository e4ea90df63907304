//! The crash and signal tests (`host_crash`, `daemon_signals`, the fail-point test of
//! `daemon_drift`) need the fail points compiled in: `cargo test --all-features` (or
//! `--features failpoints`). Under a plain `cargo test` they are not compiled at all; this test
//! says so (and fails in CI, where every test must run).

mod precondition;

#[test]
fn fail_point_tests_are_compiled_in() {
    if !cfg!(feature = "failpoints") {
        precondition::missing(
            "the failpoints feature: the crash and signal tests run only under \
             `cargo test --all-features`",
        );
    }
}
