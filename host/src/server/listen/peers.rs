//! Connections held per client address: without a per-client cap, one
//! address opening idle connections takes every slot of the total cap and
//! locks everyone else out until its connections time out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct PeerCounts {
    cap: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place in its client's count, given back on drop.
pub struct Held {
    peer: IpAddr,
    counts: PeerCounts,
}

impl PeerCounts {
    pub fn new(cap: usize) -> PeerCounts {
        PeerCounts {
            cap: cap.max(1),
            held: Arc::default(),
        }
    }

    /// A place for one more connection from `peer`, or `None` at its cap.
    pub fn admit(&self, peer: IpAddr) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = held.entry(canonical(peer)).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Held {
            peer: canonical(peer),
            counts: self.clone(),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self
            .counts
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = held.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

/// An IPv4 client reaching a `[::]` listener arrives as `::ffff:a.b.c.d`:
/// counted as the IPv4 address it is, so it has one count, not two.
fn canonical(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_is_capped_alone_and_a_closed_connection_frees_its_place() {
        let counts = PeerCounts::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = counts.admit(a).unwrap();
        let _second = counts.admit(a_mapped).unwrap();
        assert!(counts.admit(a).is_none(), "a third from the same client");
        assert!(counts.admit(b).is_some(), "another client is not held back");
        drop(first);
        assert!(
            counts.admit(a).is_some(),
            "a closed connection gives its place back"
        );
    }
}
