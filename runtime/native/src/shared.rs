//! Shared storage behind the `shared` capability: one small key-value table per
//! binding scope (`<binding>/<filter>` in the mesh config), shared by every instance and
//! engine thread and kept across chains (config reloads). The same rules as the V8
//! engine's table (`sdk/src/host/shared.ts`): keys up to 128 bytes, values up to 256;
//! 512 buckets of 8 entries (4096 in all), a key hashes (FNV-1a) to one bucket; every
//! write takes a version from one counter (never 0), and a new key in a full bucket
//! evicts the bucket's least recently written entry. A bucket's mutex makes
//! compare-and-set and add atomic across threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_VALUE_BYTES: usize = 256;
const BUCKET_SLOTS: usize = 8;
const BUCKETS: usize = 512;

struct Entry {
    key: String,
    value: String,
    version: u32,
}

pub struct SharedTable {
    buckets: Vec<Mutex<Vec<Entry>>>,
    versions: AtomicU32,
}

impl Default for SharedTable {
    fn default() -> Self {
        SharedTable { buckets: (0..BUCKETS).map(|_| Mutex::new(Vec::with_capacity(BUCKET_SLOTS))).collect(), versions: AtomicU32::new(0) }
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Why a shared-storage call traps.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("shared storage keys are 1..{MAX_KEY_BYTES} bytes, got {}", key.len()));
    }
    Ok(())
}

pub fn check_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!("shared storage values are at most {MAX_VALUE_BYTES} bytes, got {}", value.len()));
    }
    Ok(())
}

impl SharedTable {
    fn bucket(&self, key: &str) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        let i = fnv1a(key.as_bytes()) as usize % BUCKETS;
        // A panic cannot happen while a bucket is held; recover the data if it ever did.
        self.buckets[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_version(&self) -> u32 {
        loop {
            let v = self.versions.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if v != 0 {
                return v;
            }
        }
    }

    fn write(&self, bucket: &mut Vec<Entry>, key: &str, value: String) {
        let version = self.next_version();
        if let Some(e) = bucket.iter_mut().find(|e| e.key == key) {
            e.value = value;
            e.version = version;
            return;
        }
        if bucket.len() >= BUCKET_SLOTS {
            if let Some(oldest) = bucket.iter().enumerate().min_by_key(|(_, e)| e.version).map(|(i, _)| i) {
                bucket.swap_remove(oldest);
            }
        }
        bucket.push(Entry { key: key.to_string(), value, version });
    }

    pub fn get(&self, key: &str) -> Option<(String, u32)> {
        self.bucket(key).iter().find(|e| e.key == key).map(|e| (e.value.clone(), e.version))
    }

    /// Stores `value` if the entry's version is still `version` (0: the key must be absent).
    pub fn set(&self, key: &str, value: String, version: u32) -> bool {
        let mut bucket = self.bucket(key);
        let current = bucket.iter().find(|e| e.key == key).map(|e| e.version).unwrap_or(0);
        if current != version {
            return false;
        }
        self.write(&mut bucket, key, value);
        true
    }

    /// Adds `delta` to the integer at `key` (absent or not an integer: 0); returns the new value.
    pub fn add(&self, key: &str, delta: f64) -> Result<f64, String> {
        let d = delta.trunc();
        if !d.is_finite() {
            return Err(format!("shared-add: delta must be a finite integer, got {delta}"));
        }
        let mut bucket = self.bucket(key);
        let old = bucket.iter().find(|e| e.key == key).and_then(|e| e.value.parse::<f64>().ok()).filter(|v| v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_991.0).unwrap_or(0.0);
        let next = old + d;
        self.write(&mut bucket, key, format!("{next}"));
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_set_and_add() {
        let t = SharedTable::default();
        assert!(t.set("k", "a".into(), 0));
        assert!(!t.set("k", "b".into(), 0));
        let (v, version) = t.get("k").unwrap();
        assert_eq!(v, "a");
        assert!(t.set("k", "c".into(), version));
        assert_eq!(t.add("n", 2.0).unwrap(), 2.0);
        assert_eq!(t.add("n", -5.0).unwrap(), -3.0);
        assert_eq!(t.get("n").unwrap().0, "-3");
    }

    #[test]
    fn add_is_atomic_across_threads() {
        let t = std::sync::Arc::new(SharedTable::default());
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
        assert_eq!(t.get("hits").unwrap().0, "20000");
    }

    #[test]
    fn a_full_bucket_evicts_its_least_recently_written_entry() {
        let t = SharedTable::default();
        // Keys of one bucket.
        let keys: Vec<String> = (0..100_000).map(|i| format!("k{i}")).filter(|k| fnv1a(k.as_bytes()) as usize % BUCKETS == 0).take(BUCKET_SLOTS + 1).collect();
        for k in &keys[..BUCKET_SLOTS] {
            t.set(k, "v".into(), 0);
        }
        // Rewrite the first so the second becomes the oldest.
        let (_, v0) = t.get(&keys[0]).unwrap();
        t.set(&keys[0], "w".into(), v0);
        t.set(&keys[BUCKET_SLOTS], "new".into(), 0);
        assert!(t.get(&keys[1]).is_none());
        assert!(t.get(&keys[0]).is_some());
        assert_eq!(t.get(&keys[BUCKET_SLOTS]).unwrap().0, "new");
    }
}
