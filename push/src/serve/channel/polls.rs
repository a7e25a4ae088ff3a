//! The bound on long polls: each one holds a connection for up to a
//! minute, so a client (an IPv4 address, an IPv6 /64, as the accept loop
//! counts them) may hold at most [`PER_CLIENT`] and everyone together at
//! most [`TOTAL`], both well inside the accept loop's own connection limits
//! (32 per client, 512 in all), so that hooks and the status page are
//! still served. Beyond them a long poll is answered at once: `429` for
//! the client over its share, `503` when all are taken.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Long polls one client may hold at once (a site of pull hosts behind
/// one NAT address shares them).
pub const PER_CLIENT: usize = 24;
/// Long polls held at once, in all.
pub const TOTAL: usize = 384;

/// Who holds how many long polls.
#[derive(Debug, Default)]
pub struct PollGate {
    /// Per client, and the total.
    held: Arc<Mutex<(HashMap<IpAddr, usize>, usize)>>,
}

/// A long poll refused for the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PollRefusal {
    /// The client holds its share.
    #[error("this client holds {PER_CLIENT} long polls already; ask without wait, or again later")]
    ClientFull,
    /// Every long poll is taken.
    #[error("push serve holds {TOTAL} long polls already; ask again later")]
    Full,
}

/// A long poll held; released on drop.
#[derive(Debug)]
pub struct PollPermit {
    held: Arc<Mutex<(HashMap<IpAddr, usize>, usize)>>,
    client: IpAddr,
}

impl PollGate {
    /// Takes a long poll for `client` (`None`: a request without a peer
    /// address, as in tests, counted as one client).
    pub fn take(&self, client: Option<IpAddr>) -> Result<PollPermit, PollRefusal> {
        let client = client.map_or(IpAddr::from([0u8; 4]), client_of);
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (per_client, total) = &mut *held;
        if *total >= TOTAL {
            return Err(PollRefusal::Full);
        }
        let mine = per_client.entry(client).or_default();
        if *mine >= PER_CLIENT {
            return Err(PollRefusal::ClientFull);
        }
        *mine += 1;
        *total += 1;
        Ok(PollPermit {
            held: self.held.clone(),
            client,
        })
    }
}

impl Drop for PollPermit {
    fn drop(&mut self) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (per_client, total) = &mut *held;
        *total = total.saturating_sub(1);
        if let Some(mine) = per_client.get_mut(&self.client) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// The client an address counts as: itself, or its /64 (IPv4-mapped IPv6
/// as IPv4).
fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((v6.to_bits() >> 64 << 64).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_and_everyone_are_bounded_and_released() {
        let gate = PollGate::default();
        let one: IpAddr = "2001:db8::1".parse().expect("address");
        let neighbour: IpAddr = "2001:db8::2".parse().expect("address");
        let mut permits: Vec<PollPermit> = (0..PER_CLIENT)
            .map(|_| gate.take(Some(one)).expect("a permit"))
            .collect();
        // The same /64 is the same client.
        assert_eq!(
            gate.take(Some(neighbour)).expect_err("full"),
            PollRefusal::ClientFull
        );
        permits.pop();
        permits.push(gate.take(Some(neighbour)).expect("one was released"));
        for n in 0..(TOTAL - PER_CLIENT) {
            let other = IpAddr::from([10, 0, (n / 250) as u8, (n % 250) as u8]);
            permits.push(gate.take(Some(other)).expect("a permit"));
        }
        let stranger = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(
            gate.take(Some(stranger)).expect_err("full"),
            PollRefusal::Full
        );
        drop(permits);
        gate.take(Some(stranger)).expect("all released");
    }
}
