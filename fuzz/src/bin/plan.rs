//! Fuzz target: see [`machine_config_daemon_fuzz::plan_two`].
fn main() {
    afl::fuzz!(|data: &[u8]| machine_config_daemon_fuzz::plan_two(data));
}
