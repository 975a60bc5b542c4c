//! Endpoint choice: round robin, or least request by the power of two choices (Envoy's
//! default); ejected endpoints are skipped unless all are (panic mode), and passive outlier
//! detection (`consecutive_5xx`) ejects an endpoint for `baseEjectionMs × n`, never more
//! than `maxEjectionPercent` of a service. Endpoint state outlives reloads: endpoints are
//! kept by address in the proxy's registry.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub struct Endpoint {
    pub addr: SocketAddr,
    /// `(name, namespace)` of the workload behind the address, when it is a mesh workload.
    #[allow(dead_code)]
    pub workload: Option<(String, String)>,
    /// Requests (or connections) in flight.
    pub active: AtomicU32,
    failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, workload: Option<(String, String)>) -> Self {
        Endpoint { addr, workload, active: AtomicU32::new(0), failures: AtomicU32::new(0), ejections: AtomicU32::new(0), ejected_until_ms: AtomicU64::new(0) }
    }

    pub fn ejected(&self, now: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    RoundRobin,
    LeastRequest,
}

#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(rename_all = "camelCase")]
pub struct OutlierPolicy {
    /// 0: never eject.
    pub consecutive5xx: u32,
    pub base_ejection_ms: u64,
    pub max_ejection_percent: u32,
}

pub const NO_EJECTION: OutlierPolicy = OutlierPolicy { consecutive5xx: 0, base_ejection_ms: 30_000, max_ejection_percent: 0 };

/// One balancer per service (or workload port), kept across reloads.
pub struct Balancer {
    next: AtomicUsize,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let id = std::thread::current().id();
    let h = format!("{id:?}").bytes().fold(t, |a, b| a.rotate_left(5) ^ b as u64);
    h | 1
}

/// xorshift64*: cheap per-thread randomness for P2C and request ids.
pub fn random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

impl Balancer {
    pub fn new() -> Self {
        Balancer { next: AtomicUsize::new(0) }
    }

    pub fn pick(&self, policy: Policy, endpoints: &[Arc<Endpoint>], exclude: Option<&Arc<Endpoint>>) -> Option<Arc<Endpoint>> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            return Some(endpoints[0].clone());
        }
        let now = now_ms();
        let is_out = |e: &Arc<Endpoint>| e.ejected(now) || exclude.is_some_and(|x| Arc::ptr_eq(x, e));
        let healthy: Vec<&Arc<Endpoint>> = if endpoints.iter().any(is_out) {
            let mut h: Vec<&Arc<Endpoint>> = endpoints.iter().filter(|e| !is_out(e)).collect();
            if h.is_empty() {
                h = endpoints.iter().filter(|e| !exclude.is_some_and(|x| Arc::ptr_eq(x, e))).collect();
            }
            if h.is_empty() {
                h = endpoints.iter().collect();
            }
            h
        } else {
            endpoints.iter().collect()
        };
        let m = healthy.len();
        match policy {
            Policy::RoundRobin => Some(healthy[self.next.fetch_add(1, Ordering::Relaxed) % m].clone()),
            Policy::LeastRequest => {
                let a = healthy[(random() % m as u64) as usize];
                if m == 1 {
                    return Some(a.clone());
                }
                let mut b = healthy[(random() % (m as u64 - 1)) as usize];
                if Arc::ptr_eq(a, b) {
                    b = healthy[m - 1];
                }
                Some(if b.active.load(Ordering::Relaxed) < a.active.load(Ordering::Relaxed) { b.clone() } else { a.clone() })
            }
        }
    }
}

/// Records an attempt's result for outlier detection; true when it ejected the endpoint.
pub fn record_result(ep: &Endpoint, failed: bool, all: &[Arc<Endpoint>], policy: &OutlierPolicy) -> bool {
    if !failed {
        ep.failures.store(0, Ordering::Relaxed);
        return false;
    }
    let now = now_ms();
    let f = ep.failures.fetch_add(1, Ordering::Relaxed) + 1;
    if policy.consecutive5xx == 0 || f < policy.consecutive5xx || ep.ejected(now) || all.len() <= 1 {
        return false;
    }
    let ejected = all.iter().filter(|e| e.ejected(now)).count();
    if ((ejected + 1) as f64 / all.len() as f64) * 100.0 > policy.max_ejection_percent as f64 {
        return false;
    }
    let n = ep.ejections.fetch_add(1, Ordering::Relaxed) as u64 + 1;
    ep.ejected_until_ms.store(now + policy.base_ejection_ms * n, Ordering::Relaxed);
    ep.failures.store(0, Ordering::Relaxed);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: u16) -> Vec<Arc<Endpoint>> {
        (0..n).map(|i| Arc::new(Endpoint::new(SocketAddr::from(([127, 0, 0, 1], 1000 + i)), None))).collect()
    }

    #[test]
    fn round_robin_cycles_and_skips_ejected() {
        let all = eps(3);
        let b = Balancer::new();
        let picks: Vec<u16> = (0..3).map(|_| b.pick(Policy::RoundRobin, &all, None).unwrap().addr.port()).collect();
        assert_eq!(picks, vec![1000, 1001, 1002]);
        let policy = OutlierPolicy { consecutive5xx: 2, base_ejection_ms: 60_000, max_ejection_percent: 50 };
        assert!(!record_result(&all[1], true, &all, &policy));
        assert!(record_result(&all[1], true, &all, &policy));
        for _ in 0..6 {
            assert_ne!(b.pick(Policy::RoundRobin, &all, None).unwrap().addr.port(), 1001);
        }
        // A second ejection would put 2 of 3 out (> 50%): refused.
        record_result(&all[0], true, &all, &policy);
        assert!(!record_result(&all[0], true, &all, &policy));
    }

    #[test]
    fn least_request_prefers_the_idle_one_and_exclude_is_honoured() {
        let all = eps(2);
        all[0].active.store(10, Ordering::Relaxed);
        let b = Balancer::new();
        for _ in 0..20 {
            assert_eq!(b.pick(Policy::LeastRequest, &all, None).unwrap().addr.port(), 1001);
        }
        for _ in 0..5 {
            assert_eq!(b.pick(Policy::RoundRobin, &all, Some(&all[1])).unwrap().addr.port(), 1000);
        }
    }
}
