//! One JSON or YAML document (the node disruption policy file, the daemon configuration, the
//! standalone ControllerConfig file) read into a generic value, the same way for each.
//!
//! The format is told by the content: a document whose first non-blank character is `{` is
//! JSON, anything else YAML (JSON being YAML too, a YAML parser would take it, but the JSON
//! parser's messages are clearer). A UTF-8 byte order mark is skipped. The YAML parser's
//! message can span lines (a source snippet); it is folded onto one line so that a log line or
//! an error naming the field stays one line.

use serde_json::Value;

/// The document in `bytes`; `Ok(None)` when it is empty or only blanks (whether that is an
/// error is the caller's to say). Errors say what was wrong (`not valid UTF-8: …`,
/// `invalid JSON: …`, `invalid YAML: …`), on one line.
pub fn parse_json_or_yaml(bytes: &[u8]) -> Result<Option<Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8: {e}"))?;
    let text = text.trim_start_matches('\u{feff}');
    if text.trim().is_empty() {
        return Ok(None);
    }
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("invalid JSON: {e}"))
    } else {
        serde_saphyr::from_str(text).map(Some).map_err(|e| {
            let msg = e.to_string();
            let lines: Vec<&str> = msg
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            format!("invalid YAML: {}", lines.join(" "))
        })
    }
}
