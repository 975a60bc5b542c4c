//! Shared storage behind the `shared` capability: the node-wide table of a binding scope
//! (`<binding>/<filter>` in the mesh config), a file in the node's shared directory mapped
//! by every proxy process of the node (the `node:cluster` workers) and every engine thread.
//!
//! The table is the C implementation in `runtime/addon/src/shared-table.c` (compiled by
//! `build.rs`), the same code the V8 engine reaches through its addon, so both engines
//! share one file layout and one set of rules: keys up to 128 bytes, values up to 256;
//! at most `maxKeys` keys (the binding's, default 4096) in buckets of 8 entries; versions
//! from one counter (never 0); no live entry is ever evicted (a new key takes an empty slot
//! or an expired entry's, `~<unix ms>:…`, else the table is full); robust process-shared
//! bucket locks, so a worker killed mid-call leaves no lock behind, waited for at most
//! 20 ms, so a stuck or foreign holder fails the call instead of hanging it.

use std::ffi::{CStr, CString, c_char, c_int};

pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_VALUE_BYTES: usize = 256;
/// Keys a table holds unless its binding says otherwise (`maxKeys`).
pub const DEFAULT_KEYS: u32 = 4096;

#[repr(C)]
struct RawTable {
    _private: [u8; 0],
}

const OK: c_int = 0;
const ABSENT: c_int = 1;
const FULL: c_int = 3;
const ECORRUPT: c_int = -5;
const ETIMEDOUT: i32 = 110;

unsafe extern "C" {
    fn ambit_st_open(dir: *const c_char, scope: *const c_char, max_keys: u32, why: *mut c_char, why_len: usize) -> *mut RawTable;
    fn ambit_st_path(t: *const RawTable) -> *const c_char;
    fn ambit_st_max_keys(t: *const RawTable) -> u32;
    fn ambit_st_get(t: *mut RawTable, key: *const u8, key_len: usize, value: *mut u8, value_len: *mut usize, version: *mut u32) -> c_int;
    fn ambit_st_set(t: *mut RawTable, key: *const u8, key_len: usize, value: *const u8, value_len: usize, version: u32) -> c_int;
    fn ambit_st_add(t: *mut RawTable, key: *const u8, key_len: usize, delta: f64, result: *mut f64) -> c_int;
    fn ambit_st_last_lock_error() -> c_int;
    fn ambit_st_last_lock_holder() -> c_int;
    #[cfg(test)]
    fn ambit_st_hold_bucket_for_test(t: *mut RawTable, key: *const u8, key_len: usize) -> c_int;
}

/// One scope's table. The C side maps each file once per process and keeps it.
pub struct SharedTable {
    raw: *mut RawTable,
}

// SAFETY: the C table locks each bucket itself (process-shared mutexes); the handle is
// never freed while the process runs.
unsafe impl Send for SharedTable {}
unsafe impl Sync for SharedTable {}

/// Why a shared-storage call traps.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("shared storage: a key must be 1 to {MAX_KEY_BYTES} bytes, got {}; hash long keys first", key.len()));
    }
    Ok(())
}

pub fn check_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("shared storage: a value must be at most {MAX_VALUE_BYTES} bytes, got {}", value.len()));
    }
    Ok(())
}


impl SharedTable {
    /// Opens (creating on first use, sized for `max_keys`) the table of `scope` in `dir`,
    /// which must exist, be the proxy user's and not be writable by group or others.
    pub fn open(dir: &str, scope: &str, max_keys: u32) -> Result<SharedTable, String> {
        let c_dir = CString::new(dir).map_err(|_| format!("shared directory {dir:?} contains a NUL byte"))?;
        let c_scope = CString::new(scope).map_err(|_| format!("shared scope {scope:?} contains a NUL byte"))?;
        let mut why = [0 as c_char; 512];
        let raw = unsafe { ambit_st_open(c_dir.as_ptr(), c_scope.as_ptr(), max_keys, why.as_mut_ptr(), why.len()) };
        if raw.is_null() {
            return Err(unsafe { CStr::from_ptr(why.as_ptr()) }.to_string_lossy().into_owned());
        }
        Ok(SharedTable { raw })
    }

    /// The file behind the table.
    pub fn path(&self) -> String {
        unsafe { CStr::from_ptr(ambit_st_path(self.raw)) }.to_string_lossy().into_owned()
    }

    /// What a failed call means, naming the file and what to do.
    fn failure(&self, r: c_int) -> String {
        let path = self.path();
        match r {
            FULL => format!(
                "shared storage: the table {path} is full (maxKeys {}, no expired entry in the key's bucket); raise the binding's maxKeys",
                unsafe { ambit_st_max_keys(self.raw) }
            ),
            ECORRUPT => format!("shared storage: the table {path} is damaged (a length or a lock out of bounds); remove it, or give the proxy a new shared directory"),
            _ => match unsafe { ambit_st_last_lock_error() } {
                ETIMEDOUT => format!(
                    "shared storage: a bucket lock of {path} was held for over 20 ms by thread {} (a stuck or foreign process); the call failed instead of waiting",
                    unsafe { ambit_st_last_lock_holder() }
                ),
                e => format!("shared storage: a bucket lock of {path} failed: {}", std::io::Error::from_raw_os_error(e)),
            },
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<(String, u32)>, String> {
        check_key(key)?;
        let mut value = [0u8; MAX_VALUE_BYTES];
        let (mut len, mut version) = (0usize, 0u32);
        match unsafe { ambit_st_get(self.raw, key.as_ptr(), key.len(), value.as_mut_ptr(), &mut len, &mut version) } {
            OK => Ok(Some((String::from_utf8_lossy(&value[..len.min(MAX_VALUE_BYTES)]).into_owned(), version))),
            ABSENT => Ok(None),
            r => Err(self.failure(r)),
        }
    }

    /// Stores `value` if the entry's version is still `version` (0: the key must be absent).
    /// False when another writer came first, or when a new key finds the table full.
    pub fn set(&self, key: &str, value: &str, version: u32) -> Result<bool, String> {
        check_key(key)?;
        check_value(value)?;
        match unsafe { ambit_st_set(self.raw, key.as_ptr(), key.len(), value.as_ptr(), value.len(), version) } {
            r if r >= 0 => Ok(r == OK),
            r => Err(self.failure(r)),
        }
    }

    /// Adds `delta` to the integer at `key` (absent or not an integer: 0); returns the new value.
    pub fn add(&self, key: &str, delta: f64) -> Result<f64, String> {
        check_key(key)?;
        if !delta.is_finite() {
            return Err(format!("shared-add: delta must be a finite integer, got {delta}"));
        }
        let mut result = 0.0;
        match unsafe { ambit_st_add(self.raw, key.as_ptr(), key.len(), delta, &mut result) } {
            OK => Ok(result),
            r => Err(self.failure(r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A fresh directory, removed when the test ends (mapped tables outlive their files).
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("ambit-shared-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> String {
            self.0.to_string_lossy().into_owned()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn compare_and_set_and_add() {
        let t = SharedTable::open(&TempDir::new("cas").path(), "svc/ratelimit", DEFAULT_KEYS).unwrap();
        assert!(t.set("k", "a", 0).unwrap());
        assert!(!t.set("k", "b", 0).unwrap());
        let (v, version) = t.get("k").unwrap().unwrap();
        assert_eq!(v, "a");
        assert!(t.set("k", "c", version).unwrap());
        assert_eq!(t.add("n", 2.9).unwrap(), 2.0);
        assert_eq!(t.add("n", -5.0).unwrap(), -3.0);
        assert_eq!(t.get("n").unwrap().unwrap().0, "-3");
        // Not an integer: counts from 0.
        t.set("k2", "1.5", 0).unwrap();
        assert_eq!(t.add("k2", 1.0).unwrap(), 1.0);
        assert!(t.get("").is_err());
        assert!(t.set("k", &"v".repeat(257), 0).is_err());
        assert!(t.add("k", f64::NAN).is_err());
    }

    #[test]
    fn scopes_are_files_of_their_own_and_reopening_shares_entries() {
        let dir = TempDir::new("scopes");
        let dir = dir.path();
        let a = SharedTable::open(&dir, "a/f", DEFAULT_KEYS).unwrap();
        let b = SharedTable::open(&dir, "b/f", DEFAULT_KEYS).unwrap();
        assert_ne!(a.path(), b.path());
        a.add("hits", 3.0).unwrap();
        assert!(b.get("hits").unwrap().is_none());
        let again = SharedTable::open(&dir, "a/f", DEFAULT_KEYS).unwrap();
        assert_eq!(again.get("hits").unwrap().unwrap().0, "3");
        assert!(SharedTable::open("/nonexistent-ambit-dir", "a/f", DEFAULT_KEYS).err().unwrap().contains("must exist"));
    }

    #[test]
    fn add_is_atomic_across_threads() {
        let t = Arc::new(SharedTable::open(&TempDir::new("threads").path(), "s", DEFAULT_KEYS).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..5000 {
                        t.add("hits", 1.0).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(t.get("hits").unwrap().unwrap().0, "20000");
    }

    /// Keys that hash (FNV-1a, like the C table) to bucket 0 of `buckets`.
    fn keys_of_one_bucket(n: usize, buckets: u32) -> Vec<String> {
        let fnv = |s: &str| s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
        (0..1_000_000).map(|i| format!("k{i}")).filter(|k| fnv(k) % buckets == 0).take(n).collect()
    }

    #[test]
    fn a_full_bucket_or_table_evicts_no_live_entry_only_expired_ones() {
        // 16 keys: 8 buckets of 8 slots (the smallest table).
        let t = SharedTable::open(&TempDir::new("evict").path(), "s", 16).unwrap();
        let keys = keys_of_one_bucket(10, 8);
        for k in &keys[..8] {
            assert!(t.set(k, "1:0", 0).unwrap());
        }
        // The bucket is full of live entries: a new key is refused, and every entry stays.
        assert!(!t.set(&keys[8], "new", 0).unwrap());
        assert!(t.get(&keys[8]).unwrap().is_none());
        assert!(t.add(&keys[8], 1.0).unwrap_err().contains("is full (maxKeys 16"));
        for k in &keys[..8] {
            assert_eq!(t.get(k).unwrap().unwrap().0, "1:0");
        }
        // An entry that says it expired (in the past) gives its slot to the new key; one in the future does not.
        let (_, v1) = t.get(&keys[1]).unwrap().unwrap();
        t.set(&keys[1], "~1000:9:0", v1).unwrap();
        let (_, v2) = t.get(&keys[2]).unwrap().unwrap();
        t.set(&keys[2], "~99999999999999:0:0", v2).unwrap();
        assert!(t.set(&keys[8], "new", 0).unwrap());
        assert!(t.get(&keys[1]).unwrap().is_none());
        assert!(t.get(&keys[2]).unwrap().is_some());
        assert!(!t.set(&keys[9], "new", 0).unwrap());
    }

    #[test]
    fn a_table_holds_max_keys_keys_then_refuses_new_ones() {
        let t = SharedTable::open(&TempDir::new("max").path(), "s", 100).unwrap();
        let stored = (0..1000).filter(|i| t.set(&format!("key-{i}"), "v", 0).unwrap()).count();
        assert_eq!(stored, 100);
        assert!(t.add("one-more", 1.0).is_err());
    }

    #[test]
    fn a_lock_held_by_a_live_foreign_process_fails_the_call_instead_of_hanging_it() {
        let dir = TempDir::new("stuck");
        let t = SharedTable::open(&dir.path(), "s", DEFAULT_KEYS).unwrap();
        t.add("hits", 1.0).unwrap();
        let (mut ready, mut go) = ([0i32; 2], 0u8);
        assert_eq!(unsafe { libc::pipe(ready.as_mut_ptr()) }, 0);
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // Takes the bucket's lock, says so, and stays alive holding it.
            let r = unsafe { ambit_st_hold_bucket_for_test(t.raw, "hits".as_ptr(), 4) };
            unsafe { libc::write(ready[1], [r as u8].as_ptr().cast(), 1) };
            loop {
                unsafe { libc::pause() };
            }
        }
        assert_eq!(unsafe { libc::read(ready[0], (&mut go as *mut u8).cast(), 1) }, 1);
        assert_eq!(go, 0, "the child holds the lock");
        let started = std::time::Instant::now();
        let err = t.add("hits", 1.0).unwrap_err();
        let waited = started.elapsed();
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(err.contains("was held for over 20 ms by thread"), "{err}");
        assert!(err.contains(&pid.to_string()), "names the holder: {err}");
        // Bounded by the lock wait, not by the holder (generous: a loaded machine).
        assert!(waited < std::time::Duration::from_secs(5), "waited {waited:?}");
        // Once the holder is gone, the lock is taken over and the entry is whole.
        assert_eq!(t.add("hits", 1.0).unwrap(), 2.0);
    }

    #[test]
    fn a_process_that_dies_holding_a_bucket_lock_leaves_it_to_the_next() {
        let dir = TempDir::new("robust");
        let dir = dir.path();
        let t = SharedTable::open(&dir, "s", DEFAULT_KEYS).unwrap();
        t.add("hits", 1.0).unwrap();
        // A child process takes the bucket's lock and exits without letting go.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let r = unsafe { ambit_st_hold_bucket_for_test(t.raw, "hits".as_ptr(), 4) };
            unsafe { libc::_exit(if r == 0 { 0 } else { 1 }) };
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child held the lock");
        // The next caller gets the lock (EOWNERDEAD, made consistent) and the entry is whole.
        assert_eq!(t.add("hits", 1.0).unwrap(), 2.0);
        assert_eq!(t.get("hits").unwrap().unwrap().0, "2");
    }
}
