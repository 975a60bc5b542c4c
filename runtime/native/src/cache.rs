//! Precompiled components on disk, so a restart or a second node process skips
//! Cranelift. An entry is keyed by the component's sha256 inside a folder keyed by
//! this crate's and wasmtime's versions and the engine's compatibility hash
//! (compiler settings, CPU features, memory layout). Each entry carries the sha256 of
//! its own bytes: an entry that does not match, or that wasmtime refuses, is compiled
//! again and replaced, never loaded.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The wasmtime release this crate is built against (Cargo.toml).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// What happened to the cache while loading a component.
pub enum CacheOutcome {
    /// No cache folder configured.
    Off,
    /// Already compiled and linked in this engine (another binding of the same component).
    Loaded,
    Hit,
    Miss,
    /// An entry existed but was not trusted; it was compiled again and replaced.
    Rebuilt(String),
}

impl CacheOutcome {
    pub fn describe(&self) -> String {
        match self {
            CacheOutcome::Off => "off".into(),
            CacheOutcome::Loaded => "loaded".into(),
            CacheOutcome::Hit => "hit".into(),
            CacheOutcome::Miss => "miss".into(),
            CacheOutcome::Rebuilt(why) => format!("rebuilt: {why}"),
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The folder for artifacts of this engine configuration under `root`.
pub fn engine_dir(root: &Path, engine: &Engine) -> PathBuf {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    root.join(format!("wasmtime-{WASMTIME_VERSION}-ambit-{}-{:016x}", env!("CARGO_PKG_VERSION"), h.finish()))
}

/// Returns the compiled component for `wasm` (whose sha256 is `sha256`), from the
/// cache when a trusted entry exists.
pub fn load_or_compile(engine: &Engine, dir: Option<&Path>, wasm: &[u8], sha256: &str) -> wasmtime::Result<(Component, CacheOutcome)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, wasm)?, CacheOutcome::Off));
    };
    let artifact = dir.join(format!("{sha256}.cwasm"));
    let sum = dir.join(format!("{sha256}.cwasm.sha256"));
    let mut outcome = CacheOutcome::Miss;
    if artifact.exists() {
        match read_trusted(engine, &artifact, &sum) {
            Ok(component) => return Ok((component, CacheOutcome::Hit)),
            Err(why) => outcome = CacheOutcome::Rebuilt(why),
        }
    }
    let component = Component::new(engine, wasm)?;
    // A cache that cannot be written costs a compile next time, nothing else.
    let _ = write_entry(dir, &artifact, &sum, &component.serialize()?);
    Ok((component, outcome))
}

fn read_trusted(engine: &Engine, artifact: &Path, sum: &Path) -> Result<Component, String> {
    let bytes = fs::read(artifact).map_err(|e| format!("unreadable entry: {e}"))?;
    let expected = fs::read_to_string(sum).map_err(|e| format!("checksum file missing: {e}"))?;
    let actual = sha256_hex(&bytes);
    if expected.trim() != actual {
        return Err(format!("checksum mismatch (expected {}, found {actual})", expected.trim()));
    }
    // SAFETY: the bytes are exactly what this engine configuration serialized (checked
    // by their sha256 above, in a folder keyed by the engine's compatibility hash), and
    // wasmtime checks its own header and version before using them.
    unsafe { Component::deserialize(engine, &bytes) }.map_err(|e| format!("refused by wasmtime: {e}"))
}

fn write_entry(dir: &Path, artifact: &Path, sum: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = artifact.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, bytes)?;
    // Checksum first: a reader that sees the new artifact also sees its sum.
    let tmp_sum = sum.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp_sum, sha256_hex(bytes))?;
    fs::rename(&tmp_sum, sum)?;
    fs::rename(&tmp, artifact)?;
    Ok(())
}
