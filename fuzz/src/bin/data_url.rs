//! Fuzz target: see [`machine_config_daemon_fuzz::data_url_decoding`].
fn main() {
    afl::fuzz!(|data: &[u8]| machine_config_daemon_fuzz::data_url_decoding(data));
}
