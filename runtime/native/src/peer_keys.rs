//! Keys for the peers a filter instance sees (`context.source-key`,
//! `context.destination-key`). A guest asks for the key, a number, and reads the whole
//! peer record only for a key it has not seen: clients and servers repeat from request
//! to request, so most calls cost one host call returning a number instead of a record
//! of four strings.
//!
//! A key names one peer (all five fields) for the life of the instance, and is never
//! handed out again for another peer: keys only count up. The table is bounded; when it
//! is full it starts over, and peers seen again get new keys. A guest that kept a record
//! under an old key simply never sees that key again. Once the count would wrap, the
//! answer is 0, "do not keep".

use std::collections::HashMap;

use crate::wire::Peer;

/// Peers remembered per instance before the table starts over.
pub const MAX_PEER_KEYS: usize = 1024;

#[derive(Default)]
pub struct PeerKeys {
    keys: HashMap<Peer, u32>,
    last: u32,
}

impl PeerKeys {
    pub fn key(&mut self, peer: &Peer) -> u32 {
        if let Some(k) = self.keys.get(peer) {
            return *k;
        }
        let Some(next) = self.last.checked_add(1).filter(|k| *k != u32::MAX) else { return 0 };
        if self.keys.len() >= MAX_PEER_KEYS {
            self.keys.clear();
        }
        self.last = next;
        self.keys.insert(peer.clone(), next);
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(address: &str, identity: Option<&str>) -> Peer {
        Peer { identity: identity.map(str::to_string), workload: Some("web".into()), namespace: Some("shop".into()), address: address.into(), port: 8080 }
    }

    #[test]
    fn the_same_peer_keeps_its_key_and_another_peer_gets_another() {
        let mut k = PeerKeys::default();
        let a = k.key(&peer("10.0.0.1", Some("spiffe://td/ns/shop/sa/web")));
        assert_ne!(a, 0);
        assert_eq!(k.key(&peer("10.0.0.1", Some("spiffe://td/ns/shop/sa/web"))), a);
        // Any field that differs is another peer: here only the identity.
        let b = k.key(&peer("10.0.0.1", None));
        assert_ne!(b, a);
        assert_ne!(b, 0);
    }

    #[test]
    fn keys_are_never_reused_when_the_table_starts_over() {
        let mut k = PeerKeys::default();
        let first = k.key(&peer("10.0.0.1", None));
        let mut seen = std::collections::HashSet::new();
        seen.insert(first);
        for i in 0..(MAX_PEER_KEYS as u32 + 10) {
            let key = k.key(&peer(&format!("10.1.{}.{}", i / 256, i % 256), None));
            assert!(seen.insert(key), "key {key} handed out twice");
        }
        // The first peer was forgotten when the table started over: it gets a new key.
        let again = k.key(&peer("10.0.0.1", None));
        assert!(seen.insert(again));
    }

    #[test]
    fn the_answer_is_0_once_keys_would_wrap() {
        let mut k = PeerKeys { keys: HashMap::new(), last: u32::MAX - 2 };
        assert_eq!(k.key(&peer("10.0.0.1", None)), u32::MAX - 1);
        assert_eq!(k.key(&peer("10.0.0.2", None)), 0);
        assert_eq!(k.key(&peer("10.0.0.1", None)), u32::MAX - 1);
    }
}
