//! Who holds the accept loop's connections: each connection's client (its
//! address; an IPv6 client by its /64, the block one machine usually gets
//! whole, so that it cannot pose as many clients), how many connections each
//! client holds, and what each connection is doing: serving a request, or
//! waiting for one. The loop refuses a client's connection beyond its
//! limit, and when nearly full closes the connection that has waited
//! longest, so that a new client is served.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Whose connection it is, for the per-client limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// An IPv4 address (also as an IPv4-mapped IPv6 address, which a
    /// listener on `[::]` sees).
    V4(Ipv4Addr),
    /// An IPv6 /64: its first 64 bits.
    V6(u64),
}

impl Client {
    /// The client an address belongs to.
    pub fn of(address: IpAddr) -> Client {
        match address {
            IpAddr::V4(v4) => Client::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4),
                None => Client::V6((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::V4(v4) => write!(f, "{v4}"),
            Client::V6(prefix) => {
                write!(f, "{}/64", Ipv6Addr::from_bits(u128::from(*prefix) << 64))
            }
        }
    }
}

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Waiting since `since` for a request: its first (`served` false: the
    /// TLS handshake, the headers) or the next one on a kept-alive
    /// connection.
    Waiting {
        /// Since when.
        since: Instant,
        /// Whether it served a request before.
        served: bool,
    },
    /// Serving requests; a response counts until its body is sent.
    Serving {
        /// How many.
        requests: usize,
    },
}

/// The open connections, by client.
#[derive(Debug)]
pub struct Connections {
    /// The most connections one client may hold.
    per_client: usize,
    /// Taken briefly at each connection's start and end, and to choose one
    /// to close; never across an await.
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Connections open per client.
    clients: HashMap<Client, usize>,
    /// Every open connection, by its number.
    open: HashMap<u64, Open>,
    /// The next connection's number.
    next: u64,
}

#[derive(Debug)]
struct Open {
    /// What it is doing.
    activity: watch::Receiver<Activity>,
    /// Cancelled to close it (after the request it serves, if any).
    close: CancellationToken,
    /// Whether it was asked to close already.
    closing: bool,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtLimit {
    /// The client.
    pub client: Client,
    /// The connections it holds.
    pub holds: usize,
}

impl Connections {
    /// No connection yet; each client may hold `per_client`.
    pub fn new(per_client: usize) -> Arc<Connections> {
        Arc::new(Connections {
            per_client,
            table: Mutex::default(),
        })
    }

    /// Takes a connection of `client` (which `close` will close), unless
    /// the client holds its limit already; it is waiting for its first
    /// request from now on. Dropping the registration removes it.
    pub fn register(
        self: &Arc<Self>,
        client: Client,
        close: CancellationToken,
    ) -> Result<Registration, AtLimit> {
        let mut table = self.table();
        let holds = table.clients.get(&client).copied().unwrap_or(0);
        if holds >= self.per_client {
            return Err(AtLimit { client, holds });
        }
        let (activity, watched) = watch::channel(Activity::Waiting {
            since: Instant::now(),
            served: false,
        });
        let number = table.next;
        table.next += 1;
        table.clients.insert(client, holds + 1);
        table.open.insert(
            number,
            Open {
                activity: watched,
                close,
                closing: false,
            },
        );
        Ok(Registration {
            connections: self.clone(),
            number,
            client,
            activity: Arc::new(activity),
        })
    }

    /// Asks the connection that has waited longest for a request to close,
    /// other than `spared` (a new one); false when every other connection
    /// serves one (or was asked already).
    pub fn close_longest_waiting(&self, spared: Option<&Registration>) -> bool {
        let spared = spared.map(|registration| registration.number);
        let mut table = self.table();
        let longest = table
            .open
            .iter_mut()
            .filter(|(number, open)| !open.closing && Some(**number) != spared)
            .filter_map(|(_, open)| {
                let activity = *open.activity.borrow();
                match activity {
                    Activity::Waiting { since, .. } => Some((since, open)),
                    Activity::Serving { .. } => None,
                }
            })
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, open)) => {
                open.closing = true;
                open.close.cancel();
                true
            }
            None => false,
        }
    }

    /// How many connections are open.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.table().open.len()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection taken: counted against its client until dropped.
#[derive(Debug)]
pub struct Registration {
    /// Where it is counted.
    connections: Arc<Connections>,
    /// Its number there.
    number: u64,
    /// Its client.
    client: Client,
    /// What it is doing, set by its requests.
    activity: Arc<watch::Sender<Activity>>,
}

impl Registration {
    /// What the connection is doing, to follow.
    pub fn watch(&self) -> watch::Receiver<Activity> {
        self.activity.subscribe()
    }

    /// What the connection is doing, to set (by its requests).
    pub fn activity(&self) -> Arc<watch::Sender<Activity>> {
        self.activity.clone()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut table = self.connections.table();
        table.open.remove(&self.number);
        if let Some(holds) = table.clients.get_mut(&self.client) {
            *holds -= 1;
            if *holds == 0 {
                table.clients.remove(&self.client);
            }
        }
    }
}

/// A request being served: its connection counts as serving until this is
/// dropped (when the response's body has been sent, or the request was
/// given up).
#[derive(Debug)]
pub struct Serving(Arc<watch::Sender<Activity>>);

impl Serving {
    /// A request begins on the connection whose activity this is.
    pub fn begin(activity: &Arc<watch::Sender<Activity>>) -> Serving {
        activity.send_modify(|activity| {
            *activity = match *activity {
                Activity::Serving { requests } => Activity::Serving {
                    requests: requests + 1,
                },
                Activity::Waiting { .. } => Activity::Serving { requests: 1 },
            }
        });
        Serving(activity.clone())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.send_modify(|activity| {
            *activity = match *activity {
                Activity::Serving { requests } if requests > 1 => Activity::Serving {
                    requests: requests - 1,
                },
                _ => Activity::Waiting {
                    since: Instant::now(),
                    served: true,
                },
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(address: &str) -> Client {
        Client::of(address.parse().expect("address"))
    }

    #[test]
    fn ipv4_counts_by_address_and_ipv6_by_its_64() {
        assert_ne!(client("127.0.0.1"), client("127.0.0.2"));
        assert_eq!(client("2001:db8:1:2::1"), client("2001:db8:1:2:ffff::9"));
        assert_ne!(client("2001:db8:1:2::1"), client("2001:db8:1:3::1"));
        // A listener on [::] sees IPv4 clients as mapped addresses: each is
        // still its own client, not one /64 for all of IPv4.
        assert_eq!(client("::ffff:127.0.0.2"), client("127.0.0.2"));
        assert_ne!(client("::ffff:127.0.0.2"), client("::ffff:127.0.0.3"));
        assert_eq!(client("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(client("::ffff:10.0.0.7").to_string(), "10.0.0.7");
    }

    #[test]
    fn a_client_holds_at_most_its_limit_and_gets_a_slot_back_when_one_closes() {
        let connections = Connections::new(2);
        let first = connections.register(client("10.0.0.1"), CancellationToken::new());
        let second = connections.register(client("10.0.0.1"), CancellationToken::new());
        let third = connections.register(client("10.0.0.1"), CancellationToken::new());
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(
            third.err(),
            Some(AtLimit {
                client: client("10.0.0.1"),
                holds: 2
            })
        );
        // Another client is not affected; a closed connection frees a slot.
        assert!(connections
            .register(client("10.0.0.2"), CancellationToken::new())
            .is_ok());
        drop(first);
        assert!(connections
            .register(client("10.0.0.1"), CancellationToken::new())
            .is_ok());
        assert_eq!(connections.open(), 1, "the others were dropped meanwhile");
    }

    #[test]
    fn the_connection_waiting_longest_is_closed_first_and_one_serving_never() {
        let connections = Connections::new(10);
        let tokens: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
        let registrations: Vec<Registration> = tokens
            .iter()
            .map(|token| {
                let registration = connections
                    .register(client("10.0.0.1"), token.clone())
                    .expect("taken");
                std::thread::sleep(std::time::Duration::from_millis(2));
                registration
            })
            .collect();
        // The oldest serves a request; the second has waited longest since.
        let serving = Serving::begin(&registrations[0].activity());
        assert!(connections.close_longest_waiting(None));
        assert_eq!(
            tokens.iter().map(|t| t.is_cancelled()).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert!(connections.close_longest_waiting(None));
        assert!(tokens[2].is_cancelled());
        assert!(
            !connections.close_longest_waiting(None),
            "the one serving a request was closed"
        );
        // Its request done, it waits again, and may be closed.
        drop(serving);
        assert!(matches!(
            *registrations[0].watch().borrow(),
            Activity::Waiting { served: true, .. }
        ));
        assert!(connections.close_longest_waiting(None));
        assert!(tokens[0].is_cancelled());
    }
}
