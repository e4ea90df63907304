//! Reading MachineConfigs from bytes, files and directories.
//!
//! Accepted documents (JSON or YAML, told apart by content, not by file extension):
//! - a `MachineConfig` (`machineconfiguration.openshift.io/v1`);
//! - a `v1` `List` (or a `MachineConfigList`) of MachineConfigs;
//! - a bare Ignition config, wrapped as a MachineConfig named after the file stem.
//!
//! YAML may hold several documents (`---`). YAML is read the way the cluster's own tools read it
//! (YAML 1.1 scalars: `0644` is octal, `yes` is a boolean), so a file means the same here as after
//! `oc apply`. Every problem of an input is reported at once, each naming its origin and field.
//!
//! A config is untrusted input, so loading is bounded ([`Limits`]): only regular files are read
//! (or stdin, named `-`), never a FIFO or a device, and no more than `config_bytes` of each; the
//! decoded contents of each file (`contents` or an `append` entry, after gzip) may not exceed
//! `file_bytes`, and those of every file of one load together `total_bytes`. Decompression stops
//! at the cap, and the total counts every decoded file, so YAML aliases that repeat one source
//! many times cannot multiply memory. Messages quote at most [`QUOTE_MAX`] characters of any
//! input.
//!
//! Memory: a JSON input is read through a small buffer and its files are decoded one at a time
//! as they are read ([`super::stream`]): what a load holds is the config it returns (the files'
//! decoded contents and the rest), not the input's text nor a JSON tree of it. Whatever that
//! road does not expect is loaded the general way (the input read whole, parsed into a JSON
//! tree, checked through the `ignition-config` types), with the same result and messages.

use super::config::{MC_API_VERSION, MC_KIND, MachineConfig, MachineConfigSpec};
use super::error::{FieldError, LoadErrors, clip_input, user_terms};
use super::ignition::{PreFiles, join, kind_of};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

pub use super::ignition::machine_config_to_json;

pub use super::config::ROLE_LABEL;

/// Kernel types a MachineConfig may ask for.
pub const KERNEL_TYPES: &[&str] = &["default", "realtime", "64k-pages"];

/// Keys of `spec` that upstream defines and this daemon has no use for: accepted silently.
const IGNORED_SPEC_KEYS: &[&str] = &["baseOSExtensionsContainerImage"];

/// Bounds on what loading reads and decodes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input file (or stdin), in bytes.
    pub config_bytes: u64,
    /// Largest decoded contents of one file or `append` entry, in bytes.
    pub file_bytes: u64,
    /// Largest decoded contents of every file of one load together, in bytes.
    pub total_bytes: u64,
}

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    /// 64 MiB per config, 32 MiB per file, 256 MiB in all.
    fn default() -> Self {
        Limits {
            config_bytes: 64 * MIB,
            file_bytes: 32 * MIB,
            total_bytes: 256 * MIB,
        }
    }
}

impl Limits {
    /// No bound: for what the daemon itself wrote (the stored current config).
    pub fn unbounded() -> Self {
        Limits {
            config_bytes: u64::MAX,
            file_bytes: u64::MAX,
            total_bytes: u64::MAX,
        }
    }
}

/// `n` bytes for messages: `32 MiB`, or `1234 bytes`.
pub fn size(n: u64) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

/// Longest piece of an input a message quotes, in characters.
pub const QUOTE_MAX: usize = 200;

/// `s` quoted for a message (`"..."`, as `{:?}` writes it), cut to [`QUOTE_MAX`] characters with
/// the full length said.
pub fn quote(s: &str) -> String {
    // A little under the limit, so that the quotes and the ellipsis fit in it too.
    match s.char_indices().nth(QUOTE_MAX - 10) {
        None => format!("{s:?}"),
        Some((i, _)) => format!("{:?}… ({} bytes in all)", &s[..i], s.len()),
    }
}

/// What decoding may still use within a load: shared by every file of every document.
#[derive(Debug)]
pub struct Budget {
    pub limits: Limits,
    used: std::cell::Cell<u64>,
    /// The total was found exceeded (said once, not for every file after it).
    over: std::cell::Cell<bool>,
    /// Files are thinned as they are read, but for these paths ([`Budget::thinning`]).
    thin_keep: Option<&'static [&'static str]>,
    /// With `thin_keep`: the files are spooled there rather than thinned ([`Budget::spooling`]).
    spool: Option<std::sync::Arc<crate::model::Spool>>,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            used: std::cell::Cell::new(0),
            over: std::cell::Cell::new(false),
            thin_keep: None,
            spool: None,
        }
    }

    /// The files read on the streamed road are thinned as they are decoded
    /// ([`crate::model::File::thin`]), except at the paths in `keep`; only the digests are
    /// ever held together. The general road loads whole: thin its result with
    /// [`crate::model::MachineConfig::thin_contents`].
    pub fn thinning(mut self, keep: &'static [&'static str]) -> Self {
        self.thin_keep = Some(keep);
        self
    }

    /// The files read on the streamed road are spooled to `spool` as they are decoded
    /// ([`crate::model::File::spool`]), except at the paths in `keep`; only their digests and
    /// places in the spool are held together. The general road loads whole: spool its result
    /// with [`crate::model::MachineConfig::spool_contents`].
    pub fn spooling(
        mut self,
        spool: std::sync::Arc<crate::model::Spool>,
        keep: &'static [&'static str],
    ) -> Self {
        self.thin_keep = Some(keep);
        self.spool = Some(spool);
        self
    }

    /// The paths kept whole when thinning or spooling; `None` when the load does neither.
    pub(crate) fn thin_keep(&self) -> Option<&'static [&'static str]> {
        self.thin_keep
    }

    /// Where files are spooled ([`Budget::spooling`]).
    pub(crate) fn spool(&self) -> Option<&std::sync::Arc<crate::model::Spool>> {
        self.spool.as_ref()
    }

    /// Bytes one more decoded file may have: the per-file cap, or what is left of the total.
    pub(crate) fn room(&self) -> u64 {
        self.limits
            .file_bytes
            .min(self.limits.total_bytes.saturating_sub(self.used.get()))
    }

    /// What has been spent so far (for [`Budget::restore`]).
    pub(crate) fn snapshot(&self) -> (u64, bool) {
        (self.used.get(), self.over.get())
    }

    /// Puts back what [`Budget::snapshot`] returned: a load that is started again.
    pub(crate) fn restore(&self, (used, over): (u64, bool)) {
        self.used.set(used);
        self.over.set(over);
    }

    /// Counts `n` decoded bytes.
    pub(crate) fn spend(&self, n: u64) {
        self.used.set(self.used.get().saturating_add(n));
    }

    /// Why a file's contents do not fit, the per-file cap or the total (`what`: `decompressed`
    /// or `decoded`); `None` when the total was already said to be exceeded.
    pub(crate) fn exceeded(&self, what: &str) -> Option<String> {
        if self.limits.file_bytes <= self.limits.total_bytes.saturating_sub(self.used.get()) {
            Some(format!(
                "{what} contents exceed {} (the limit per file; --max-file-size raises it)",
                size(self.limits.file_bytes)
            ))
        } else if self.over.replace(true) {
            None
        } else {
            Some(format!(
                "{what} contents of the config's files exceed {} in all (--max-total-size raises it); the files after this one were not decoded",
                size(self.limits.total_bytes)
            ))
        }
    }
}

/// Reads `path` (stdin for `-`) within `limit` bytes: only a regular file, never a FIFO, a
/// socket or a device (a FIFO is opened without blocking, so that it cannot hang the reader).
pub fn read_input(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let too_big = || {
        format!(
            "larger than {} (the limit on a config's size; --max-config-size raises it)",
            size(limit)
        )
    };
    let mut out = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot read: {e}"))?;
        return if out.len() as u64 > limit {
            Err(too_big())
        } else {
            Ok(out)
        };
    }
    let file = open_input(path, limit)?;
    file.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read: {e}"))?;
    if out.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(out)
}

/// Opens `path` for [`read_input`]: a regular file no larger than `limit`.
fn open_input(path: &Path, limit: u64) -> Result<std::fs::File, String> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let too_big = || {
        format!(
            "larger than {} (the limit on a config's size; --max-config-size raises it)",
            size(limit)
        )
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "cannot read: {what}; a config must be a regular file (or - for stdin)"
        ));
    }
    if meta.len() > limit {
        return Err(too_big());
    }
    Ok(file)
}

/// Loads the JSON object `r` holds streamed ([`super::stream`]), through a small buffer;
/// `None` when it is not one, or the general loader must read it (what was read of `r` is then
/// lost: start again from the beginning).
pub fn stream_reader(r: impl std::io::Read, origin: &str, budget: &Budget) -> Option<Loaded> {
    use std::io::BufRead;
    let mut r = std::io::BufReader::with_capacity(64 * 1024, r);
    let buf = r.fill_buf().ok()?;
    let bom = buf.starts_with(b"\xEF\xBB\xBF");
    let buf = if bom { &buf[3..] } else { buf };
    if buf.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    if bom {
        r.consume(3);
    }
    super::stream::load_reader(r, origin, budget)
}

/// Loads the JSON object in `file` streamed ([`super::stream`]), through a small buffer;
/// `None` when it is not one, or the general loader must read it.
fn stream_file(file: &std::fs::File, origin: &str, limit: u64, budget: &Budget) -> Option<Loaded> {
    use std::io::Read;
    stream_reader(file.take(limit.saturating_add(1)), origin, budget)
}

/// The origin messages give an input: its path, or `stdin` for `-`.
fn origin_of(path: &Path) -> String {
    if path == Path::new("-") {
        "stdin".to_string()
    } else {
        path.display().to_string()
    }
}

/// MachineConfigs read from one or more inputs, with the warnings (unknown keys) met on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub configs: Vec<MachineConfig>,
    pub warnings: Vec<String>,
}

/// Parses every MachineConfig in `bytes`. `origin` (usually the file name) prefixes messages and
/// names a bare Ignition config (its file stem).
pub fn parse_machine_configs(bytes: &[u8], origin: &str) -> Result<Loaded, LoadErrors> {
    parse_machine_configs_with(bytes, origin, &Budget::new(Limits::default()))
}

/// [`parse_machine_configs`], decoding within `budget` (shared with other inputs of a load).
pub fn parse_machine_configs_with(
    bytes: &[u8],
    origin: &str,
    budget: &Budget,
) -> Result<Loaded, LoadErrors> {
    if let Some(json) = json_object(bytes)
        && let Some(loaded) = super::stream::load_slice(json, origin, budget)
    {
        return Ok(loaded);
    }
    parse_general(bytes, origin, budget)
}

/// `bytes` without a byte order mark, when they hold a JSON object (the first non-blank
/// character is `{`): what [`super::stream`] reads.
fn json_object(bytes: &[u8]) -> Option<&[u8]> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    (bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')).then_some(bytes)
}

/// [`parse_machine_configs_with`] the general way: every document parsed into a JSON tree
/// first (see [`super::stream`] for the faster road).
pub(crate) fn parse_general(
    bytes: &[u8],
    origin: &str,
    budget: &Budget,
) -> Result<Loaded, LoadErrors> {
    let docs = parse_documents(bytes).map_err(|reason| LoadErrors::single(origin, reason))?;
    if docs.is_empty() {
        return Err(LoadErrors::single(origin, "empty input: no MachineConfig"));
    }
    let mut loaded = Loaded::default();
    let mut errors = Vec::new();
    let several = docs.len() > 1;
    for (d, doc) in docs.iter().enumerate() {
        let doc_origin = if several {
            format!("{origin} (document {})", d + 1)
        } else {
            origin.to_string()
        };
        one_document(
            doc,
            origin,
            &doc_origin,
            budget,
            &mut HashMap::new(),
            &mut loaded,
            &mut errors,
        );
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(LoadErrors::new(errors))
    }
}

/// The one document of a streamed JSON input, whose files were read already (`pre`, by the
/// field path of their config; what is used is taken out).
pub(crate) fn parse_document_pre(
    doc: Value,
    origin: &str,
    budget: &Budget,
    pre: &mut HashMap<String, PreFiles>,
) -> Result<Loaded, LoadErrors> {
    let mut loaded = Loaded::default();
    let mut errors = Vec::new();
    one_document(&doc, origin, origin, budget, pre, &mut loaded, &mut errors);
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(LoadErrors::new(errors))
    }
}

fn one_document(
    doc: &Value,
    origin: &str,
    doc_origin: &str,
    budget: &Budget,
    pre: &mut HashMap<String, PreFiles>,
    loaded: &mut Loaded,
    errors: &mut Vec<FieldError>,
) {
    let mut warnings = Vec::new();
    match document(doc, origin, &mut warnings, budget, pre) {
        Ok(configs) => loaded.configs.extend(configs),
        Err(errs) => errors.extend(errs.into_iter().map(|e| e.with_origin(doc_origin))),
    }
    loaded.warnings.extend(
        warnings
            .into_iter()
            .map(|w| clip_input(&prefix(doc_origin, &w))),
    );
}

fn prefix(origin: &str, message: &str) -> String {
    if origin.is_empty() {
        message.to_string()
    } else {
        format!("{origin}: {message}")
    }
}

/// Reads `path`: a file, or a directory's `*.json`, `*.yaml` and `*.yml` files (sorted by name,
/// not recursive). Problems of every file are reported together.
pub fn load_path(path: &Path) -> Result<Loaded, LoadErrors> {
    load_path_with(path, &Limits::default())
}

/// [`load_path`] within `limits` (the total counts every file of the directory).
pub fn load_path_with(path: &Path, limits: &Limits) -> Result<Loaded, LoadErrors> {
    load_in(path, &Budget::new(*limits))
}

/// [`load_path`] within `budget`, shared with other inputs (render's several arguments).
pub fn load_in_budget(path: &Path, budget: &Budget) -> Result<Loaded, LoadErrors> {
    load_in(path, budget)
}

fn load_in(path: &Path, budget: &Budget) -> Result<Loaded, LoadErrors> {
    let origin = origin_of(path);
    let is_dir = path != Path::new("-")
        && std::fs::metadata(path)
            .map_err(|e| LoadErrors::single(&origin, format!("cannot read: {e}")))?
            .is_dir();
    if !is_dir {
        let limit = budget.limits.config_bytes;
        if path != Path::new("-") {
            // A JSON file is streamed; anything else (or a JSON file the streamed road gives
            // up on) is read whole and parsed the general way.
            let file =
                open_input(path, limit).map_err(|reason| LoadErrors::single(&origin, reason))?;
            if let Some(loaded) = stream_file(&file, &origin, limit, budget) {
                return Ok(loaded);
            }
        }
        let bytes =
            read_input(path, limit).map_err(|reason| LoadErrors::single(&origin, reason))?;
        return if path == Path::new("-") {
            parse_machine_configs_with(&bytes, &origin, budget)
        } else {
            parse_general(&bytes, &origin, budget)
        };
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| LoadErrors::single(&origin, format!("cannot read directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| LoadErrors::single(&origin, format!("cannot read directory: {e}")))?;
        let p = entry.path();
        let wanted = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"));
        if wanted && p.is_file() {
            files.push(p);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut loaded = Loaded::default();
    let mut errors: Option<LoadErrors> = None;
    for f in files {
        match load_in(&f, budget) {
            Ok(l) => {
                loaded.configs.extend(l.configs);
                loaded.warnings.extend(l.warnings);
            }
            Err(e) => match &mut errors {
                Some(all) => all.extend(e),
                None => errors = Some(e),
            },
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(loaded),
    }
}

/// The MachineConfig a command argument stands for: a file holding exactly one MachineConfig is
/// used as it is; a directory, or a file with several, is rendered for `pool`.
pub fn load_config_arg(
    path: &Path,
    pool: &str,
) -> Result<(MachineConfig, Vec<String>), LoadErrors> {
    load_config_arg_with(path, pool, &Limits::default())
}

/// [`load_config_arg`] within `limits`.
pub fn load_config_arg_with(
    path: &Path,
    pool: &str,
    limits: &Limits,
) -> Result<(MachineConfig, Vec<String>), LoadErrors> {
    load_desired(path, pool, limits)?
        .ok_or_else(|| LoadErrors::single(&origin_of(path), "no MachineConfig found"))
}

/// [`load_config_arg_with`], except that a directory holding no MachineConfig is `None` (the
/// daemon's empty `desired.d`: nothing is asked for).
pub fn load_desired(
    path: &Path,
    pool: &str,
    limits: &Limits,
) -> Result<Option<(MachineConfig, Vec<String>)>, LoadErrors> {
    desired_in(path, pool, &Budget::new(*limits))
}

/// [`load_desired`] for the new config of an update: every file's decoded contents but those
/// at the paths in `keep` are written to `spool` as they are read ([`Budget::spooling`]), and
/// only their digests and places there are held; writing reads them back one file at a time.
/// A directory, or a file holding several MachineConfigs, is rendered, and rendering merges
/// contents: their files are read back into memory first, so such a config is held whole.
pub fn load_desired_spooled(
    path: &Path,
    pool: &str,
    limits: &Limits,
    spool: std::sync::Arc<crate::model::Spool>,
    keep: &'static [&'static str],
) -> Result<Option<(MachineConfig, Vec<String>)>, LoadErrors> {
    desired_in(path, pool, &Budget::new(*limits).spooling(spool, keep))
}

/// [`load_config_arg_with`], spooled as [`load_desired_spooled`] says.
pub fn load_config_arg_spooled(
    path: &Path,
    pool: &str,
    limits: &Limits,
    spool: std::sync::Arc<crate::model::Spool>,
    keep: &'static [&'static str],
) -> Result<(MachineConfig, Vec<String>), LoadErrors> {
    load_desired_spooled(path, pool, limits, spool, keep)?
        .ok_or_else(|| LoadErrors::single(&origin_of(path), "no MachineConfig found"))
}

fn desired_in(
    path: &Path,
    pool: &str,
    budget: &Budget,
) -> Result<Option<(MachineConfig, Vec<String>)>, LoadErrors> {
    let origin = origin_of(path);
    let mut loaded = load_in(path, budget)?;
    if loaded.configs.is_empty() {
        if path.is_dir() {
            return Ok(None);
        }
        return Err(LoadErrors::single(&origin, "no MachineConfig found"));
    }
    if !path.is_dir() && loaded.configs.len() == 1 {
        let mut mc = loaded.configs.pop().unwrap_or_default();
        if let (Some(spool), Some(keep)) = (budget.spool(), budget.thin_keep()) {
            // The general road (YAML, or JSON the streamed road gave up on) loads whole.
            mc.spool_contents(spool, keep);
        }
        return Ok(Some((mc, loaded.warnings)));
    }
    for c in &mut loaded.configs {
        c.unspool_contents().map_err(|e| {
            LoadErrors::single(&origin, format!("cannot read the spooled contents: {e}"))
        })?;
    }
    super::render::render(pool, &loaded.configs)
        .map(|mc| Some((mc, loaded.warnings)))
        .map_err(|e| LoadErrors::single(&origin, e.to_string()))
}

/// Splits `bytes` into documents: JSON when the first non-blank character is `{` or `[`,
/// otherwise YAML (possibly several documents; empty ones are skipped).
fn parse_documents(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'[')) {
        return serde_json::from_slice::<Value>(bytes)
            .map(|v| vec![v])
            .map_err(|e| format!("invalid JSON: {}", user_terms(&e.to_string())));
    }
    if first.is_none() {
        return Ok(Vec::new());
    }
    let options = serde_saphyr::options! {
        legacy_octal_numbers: true,
        with_snippet: false,
    };
    serde_saphyr::from_slice_multiple_with_options::<Value>(bytes, options)
        .map(|docs| docs.into_iter().filter(|d| !d.is_null()).collect())
        .map_err(|e| format!("invalid YAML: {}", user_terms(&e.to_string())))
}

/// One document → its MachineConfigs.
fn document(
    doc: &Value,
    origin: &str,
    warnings: &mut Vec<String>,
    budget: &Budget,
    pre: &mut HashMap<String, PreFiles>,
) -> Result<Vec<MachineConfig>, Vec<FieldError>> {
    let Value::Object(obj) = doc else {
        return Err(vec![FieldError::new(
            "",
            format!(
                "expected a MachineConfig, a List or an Ignition config (an object), got {}",
                kind_of(doc)
            ),
        )]);
    };
    let kind = obj.get("kind").and_then(Value::as_str);
    let api = obj.get("apiVersion");
    match kind {
        None if api.is_none() && obj.contains_key("ignition") => {
            let (config, w) = super::ignition::parse_config_pre(doc, "", budget, pre.remove(""))?;
            warnings.extend(w);
            let name = Path::new(origin)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "ignition".to_string());
            Ok(vec![MachineConfig {
                name,
                labels: Default::default(),
                spec: MachineConfigSpec {
                    config,
                    ..Default::default()
                },
            }])
        }
        Some("List") | Some("MachineConfigList") => {
            let want_api = if kind == Some("List") {
                "v1"
            } else {
                MC_API_VERSION
            };
            let mut errors = Vec::new();
            check_string(obj, "apiVersion", want_api, "", &mut errors);
            let items = match obj.get("items") {
                None | Some(Value::Null) => &[][..],
                Some(Value::Array(a)) => a.as_slice(),
                Some(other) => {
                    errors.push(FieldError::new(
                        "items",
                        format!("expected a list, got {}", kind_of(other)),
                    ));
                    &[][..]
                }
            };
            let mut configs = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match machine_config(item, &format!("items[{i}]"), warnings, budget, pre) {
                    Ok(mc) => configs.push(mc),
                    Err(e) => errors.extend(e),
                }
            }
            if errors.is_empty() {
                Ok(configs)
            } else {
                Err(errors)
            }
        }
        _ => machine_config(doc, "", warnings, budget, pre).map(|mc| vec![mc]),
    }
}

/// Checks that `obj[key]` is the string `want`.
fn check_string(
    obj: &Map<String, Value>,
    key: &str,
    want: &str,
    at: &str,
    errors: &mut Vec<FieldError>,
) {
    let field = join(at, key);
    match obj.get(key) {
        Some(Value::String(s)) if s == want => {}
        None | Some(Value::Null) => {
            errors.push(FieldError::new(field, format!("missing, expected {want}")));
        }
        Some(Value::String(s)) => {
            errors.push(FieldError::new(field, format!("expected {want}, got {s}")));
        }
        Some(other) => errors.push(FieldError::new(
            field,
            format!("expected {want}, got {}", kind_of(other)),
        )),
    }
}

/// Checks a Kubernetes object name (a DNS subdomain: lowercase letters, digits, `-` and `.`,
/// starting and ending with a letter or digit, at most 253 characters).
fn check_name(name: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && name.starts_with(alnum)
        && name.ends_with(alnum);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)",
            quote(name)
        ))
    }
}

/// A MachineConfig object at field path `at` (empty, or `items[3]` in a List).
fn machine_config(
    v: &Value,
    at: &str,
    warnings: &mut Vec<String>,
    budget: &Budget,
    pre: &mut HashMap<String, PreFiles>,
) -> Result<MachineConfig, Vec<FieldError>> {
    let Value::Object(obj) = v else {
        return Err(vec![FieldError::new(
            at,
            format!("expected a MachineConfig object, got {}", kind_of(v)),
        )]);
    };
    let mut errors = Vec::new();
    check_string(obj, "apiVersion", MC_API_VERSION, at, &mut errors);
    check_string(obj, "kind", MC_KIND, at, &mut errors);
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "status"
        ) {
            warnings.push(format!("{}: unknown key, ignored", join(at, key)));
        }
    }

    let mut mc = MachineConfig::default();
    let meta_at = join(at, "metadata");
    match obj.get("metadata") {
        Some(Value::Object(meta)) => {
            match meta.get("name") {
                Some(Value::String(name)) => {
                    if let Err(reason) = check_name(name) {
                        errors.push(FieldError::new(join(&meta_at, "name"), reason));
                    }
                    mc.name = name.clone();
                }
                None | Some(Value::Null) => {
                    errors.push(FieldError::new(join(&meta_at, "name"), "missing"));
                }
                Some(other) => errors.push(FieldError::new(
                    join(&meta_at, "name"),
                    format!("expected a string, got {}", kind_of(other)),
                )),
            }
            match meta.get("labels") {
                None | Some(Value::Null) => {}
                Some(Value::Object(labels)) => {
                    for (k, val) in labels {
                        match val {
                            Value::String(s) => {
                                mc.labels.insert(k.clone(), s.clone());
                            }
                            other => errors.push(FieldError::new(
                                join(&meta_at, &format!("labels.{k}")),
                                format!("expected a string, got {}", kind_of(other)),
                            )),
                        }
                    }
                }
                Some(other) => errors.push(FieldError::new(
                    join(&meta_at, "labels"),
                    format!("expected a map, got {}", kind_of(other)),
                )),
            }
        }
        None | Some(Value::Null) => {
            errors.push(FieldError::new(join(&meta_at, "name"), "missing"));
        }
        Some(other) => errors.push(FieldError::new(
            meta_at,
            format!("expected an object, got {}", kind_of(other)),
        )),
    }

    let spec_at = join(at, "spec");
    let empty = Map::new();
    let spec = match obj.get("spec") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(s)) => s,
        Some(other) => {
            errors.push(FieldError::new(
                &spec_at,
                format!("expected an object, got {}", kind_of(other)),
            ));
            &empty
        }
    };
    for key in spec.keys() {
        let known = matches!(
            key.as_str(),
            "config" | "kernelArguments" | "kernelType" | "extensions" | "fips" | "osImageURL"
        );
        if !known && !IGNORED_SPEC_KEYS.contains(&key.as_str()) {
            warnings.push(format!("{}: unknown key, ignored", join(&spec_at, key)));
        }
    }
    let null = Value::Null;
    let field = |k: &str| spec.get(k).unwrap_or(&null);

    let config_at = join(&spec_at, "config");
    let files = pre.remove(&config_at);
    match super::ignition::parse_config_pre(field("config"), &config_at, budget, files) {
        Ok((config, w)) => {
            mc.spec.config = config;
            warnings.extend(w);
        }
        Err(e) => errors.extend(e),
    }
    mc.spec.kernel_arguments = strings(
        field("kernelArguments"),
        &join(&spec_at, "kernelArguments"),
        &mut errors,
    );
    mc.spec.extensions = strings(
        field("extensions"),
        &join(&spec_at, "extensions"),
        &mut errors,
    );
    for (i, a) in mc.spec.kernel_arguments.iter().enumerate() {
        if let Err(reason) = super::os::check_kernel_argument(a) {
            errors.push(FieldError::new(
                format!("{}[{i}]", join(&spec_at, "kernelArguments")),
                reason,
            ));
        }
    }
    for (i, e) in mc.spec.extensions.iter().enumerate() {
        if let Err(reason) = super::os::check_extension(e) {
            errors.push(FieldError::new(
                format!("{}[{i}]", join(&spec_at, "extensions")),
                reason,
            ));
        }
    }
    let kt_at = join(&spec_at, "kernelType");
    match field("kernelType") {
        Value::Null => {}
        Value::String(s) if s.is_empty() => {}
        Value::String(s) if KERNEL_TYPES.contains(&s.as_str()) => {
            mc.spec.kernel_type = Some(s.clone());
        }
        Value::String(s) => errors.push(FieldError::new(
            kt_at,
            format!(
                "unsupported kernel type {} (default, realtime or 64k-pages)",
                quote(s)
            ),
        )),
        other => errors.push(FieldError::new(
            kt_at,
            format!("expected a string, got {}", kind_of(other)),
        )),
    }
    match field("fips") {
        Value::Null => {}
        Value::Bool(b) => mc.spec.fips = *b,
        other => errors.push(FieldError::new(
            join(&spec_at, "fips"),
            format!("expected a boolean, got {}", kind_of(other)),
        )),
    }
    match field("osImageURL") {
        Value::Null => {}
        Value::String(s) => {
            if let Err(reason) = super::os::check_image_reference(s) {
                errors.push(FieldError::new(join(&spec_at, "osImageURL"), reason));
            }
            mc.spec.os_image_url = s.clone();
        }
        other => errors.push(FieldError::new(
            join(&spec_at, "osImageURL"),
            format!("expected a string, got {}", kind_of(other)),
        )),
    }
    if errors.is_empty() {
        Ok(mc)
    } else {
        Err(errors)
    }
}

/// A list of strings (null = empty).
fn strings(v: &Value, at: &str, errors: &mut Vec<FieldError>) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some(s.clone()),
                other => {
                    errors.push(FieldError::new(
                        format!("{at}[{i}]"),
                        format!("expected a string, got {}", kind_of(other)),
                    ));
                    None
                }
            })
            .collect(),
        other => {
            errors.push(FieldError::new(
                at,
                format!("expected a list of strings, got {}", kind_of(other)),
            ));
            Vec::new()
        }
    }
}
