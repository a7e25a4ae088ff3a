//! The lab's network: one bridge in the root namespace and, per node, a
//! network namespace joined to it by a veth pair. Every lab takes one /24
//! inside 198.18.0.0/16 (reserved for network tests): the bridge is `.1`
//! (the operator's side), the builder `.2`, hosts from `.10`.

use std::net::Ipv4Addr;
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::run::{output_within, run, stderr_tail, stdout_text, DEFAULT_TIMEOUT};

/// The lab's slot: names and addresses derive from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slot(pub u8);

impl Slot {
    /// The bridge's interface name (also the lab's id).
    pub fn bridge(self) -> String {
        format!("dl{}", self.0)
    }

    /// The bridge's address, the root namespace's way into the lab.
    pub fn gateway(self) -> Ipv4Addr {
        self.address(1)
    }

    /// An address in the lab's subnet.
    pub fn address(self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.0, last)
    }

    /// The network namespace of node `name`.
    pub fn netns(self, name: &str) -> String {
        format!("dl{}-{name}", self.0)
    }

    /// The root-side veth interface of the node at address `.last`.
    pub fn veth(self, last: u8) -> String {
        format!("dl{}v{last}", self.0)
    }
}

fn ip(args: &[&str]) -> Result<String> {
    Ok(stdout_text(&run(Command::new("ip").args(args))?))
}

/// Takes the first free slot by creating its bridge: the kernel refuses a
/// second interface of the same name, so two labs never share a slot.
pub fn claim_slot(first_try: u8) -> Result<Slot> {
    for offset in 0..=253u16 {
        let slot = Slot(((u16::from(first_try) + offset) % 254 + 1) as u8);
        let bridge = slot.bridge();
        let output = output_within(
            Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]),
            DEFAULT_TIMEOUT,
        )?;
        if output.status.success() {
            let gateway = format!("{}/24", slot.gateway());
            ip(&["addr", "add", &gateway, "dev", &bridge])?;
            ip(&["link", "set", &bridge, "up"])?;
            return Ok(slot);
        }
        let complaint = stderr_tail(&output);
        if !complaint.contains("exists") {
            bail!("cannot create bridge {bridge}: {complaint}");
        }
    }
    bail!("every lab slot in 198.18.0.0/16 is taken")
}

/// Creates node `name`'s namespace, with `eth0` at `.last` on the bridge.
pub fn add_node(slot: Slot, name: &str, last: u8) -> Result<()> {
    let netns = slot.netns(name);
    let veth = slot.veth(last);
    let peer = format!("dl{}p{last}", slot.0);
    ip(&["netns", "add", &netns])?;
    ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
    ip(&["link", "set", &peer, "netns", &netns])?;
    ip(&["link", "set", &veth, "master", &slot.bridge(), "up"])?;
    let address = format!("{}/24", slot.address(last));
    let inside: [&[&str]; 4] = [
        &["link", "set", &peer, "name", "eth0"],
        &["addr", "add", &address, "dev", "eth0"],
        &["link", "set", "eth0", "up"],
        &["link", "set", "lo", "up"],
    ];
    for args in inside {
        let mut full = vec!["-n", netns.as_str()];
        full.extend_from_slice(args);
        ip(&full)?;
    }
    Ok(())
}

/// Kills every process in `netns`, by id, until none is left.
pub fn kill_all_in(netns: &str) -> Result<()> {
    for _ in 0..100 {
        let pids = ip(&["netns", "pids", netns])?;
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids.split_whitespace() {
            // A process may exit between listing and killing: that is fine.
            let _ = output_within(Command::new("kill").args(["-KILL", pid]), DEFAULT_TIMEOUT);
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("processes in {netns} survive SIGKILL")
}

/// Removes interface `name` of the root namespace. A veth's end deleted
/// takes its pair at once, where a namespace's deletion frees its veth pair
/// only later, in the kernel's own time: a lab that takes the slot next
/// would find the name still in use.
pub fn remove_link(name: &str) -> Result<()> {
    ip(&["link", "del", name])?;
    Ok(())
}

/// Removes `netns` (its veth pair goes with it, later), after killing what
/// runs there.
pub fn remove_node(netns: &str) -> Result<()> {
    if !netns_exists(netns)? {
        return Ok(());
    }
    kill_all_in(netns).context("emptying the namespace")?;
    ip(&["netns", "del", netns])?;
    Ok(())
}

/// Removes the slot's bridge, if it is there.
pub fn remove_bridge(slot: Slot) -> Result<()> {
    let bridge = slot.bridge();
    let links = ip(&["-o", "link", "show"])?;
    if links
        .lines()
        .any(|line| interface_name(line) == Some(bridge.as_str()))
    {
        ip(&["link", "del", &bridge])?;
    }
    Ok(())
}

/// Whether network namespace `netns` exists.
pub fn netns_exists(netns: &str) -> Result<bool> {
    Ok(list_netns()?.iter().any(|name| name == netns))
}

/// The names of all network namespaces.
pub fn list_netns() -> Result<Vec<String>> {
    let listing = ip(&["netns", "list"])?;
    Ok(listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The names of all interfaces of the root namespace.
pub fn list_links() -> Result<Vec<String>> {
    let listing = ip(&["-o", "link", "show"])?;
    Ok(listing
        .lines()
        .filter_map(interface_name)
        .map(str::to_owned)
        .collect())
}

/// `3: dl7v10@if2: <...>` → `dl7v10`.
fn interface_name(line: &str) -> Option<&str> {
    let name = line.split(": ").nth(1)?;
    Some(name.split('@').next().unwrap_or(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_derive_from_the_slot() {
        let slot = Slot(7);
        assert_eq!(slot.bridge(), "dl7");
        assert_eq!(slot.netns("sambirano"), "dl7-sambirano");
        assert_eq!(slot.gateway(), Ipv4Addr::new(198, 18, 7, 1));
        assert_eq!(slot.address(10).to_string(), "198.18.7.10");
        assert_eq!(slot.veth(10), "dl7v10");
    }

    #[test]
    fn interface_names_are_read_from_ip_output() {
        assert_eq!(
            interface_name("3: dl7v10@if2: <BROADCAST> mtu 1500"),
            Some("dl7v10")
        );
        assert_eq!(interface_name("1: lo: <LOOPBACK,UP> mtu 65536"), Some("lo"));
    }
}
