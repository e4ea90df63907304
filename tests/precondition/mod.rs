//! What a test does when something it needs is missing here (root, a program, a feature).
//!
//! In CI (the environment variable `CI` set to anything but empty or `false`, as CI runners set
//! it) a missing precondition fails the test: CI is where every test must really run. Elsewhere
//! the test is skipped and says so on stderr (`cargo test -- --nocapture` shows it), so a
//! developer's machine without the tool still runs the rest of the suite.

/// True in CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// `what` is missing: panics in CI, otherwise prints why the test is skipped. The caller returns
/// right after.
pub fn missing(what: &str) {
    if in_ci() {
        panic!("precondition missing in CI (CI is set): {what}");
    }
    eprintln!("skipped: {what}");
}
