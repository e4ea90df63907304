//! Fuzz target: see [`machine_config_daemon_fuzz::load`].
fn main() {
    afl::fuzz!(|data: &[u8]| machine_config_daemon_fuzz::load(data));
}
