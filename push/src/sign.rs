//! Building and signing the messages `push` sends.

use anyhow::{Context, Result};
use deployd_protocol::{
    Action, DeployId, DeployRef, DeployRequest, HostName, Message, Nonce, Request, Revision,
    SecretKey, StorePath, DEFAULT_LIFETIME_S,
};

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A new deploy id: `<host>-<unix time>-<random>`, at most 64 characters.
pub fn new_deploy_id(host: &HostName) -> Result<DeployId> {
    let random = Nonce::generate().context("no randomness")?;
    let host: String = host.as_str().chars().take(40).collect();
    Ok(format!("{host}-{}-{}", now(), &random.as_str()[..6]).parse()?)
}

/// What one deploy message says beyond host and system.
pub struct DeployDetails<'a> {
    /// The activation.
    pub action: Action,
    /// The flake, for the record.
    pub flake: Option<&'a str>,
    /// The revision built.
    pub rev: Option<&'a Revision>,
    /// Whether going back is intended.
    pub allow_downgrade: bool,
    /// Magic rollback window.
    pub confirm_within_s: Option<u64>,
}

/// A signed `deploy` of `system` to `host`.
pub fn deploy(
    host: &HostName,
    system: &StorePath,
    details: &DeployDetails<'_>,
    key: &SecretKey,
) -> Result<(DeployId, Vec<u8>)> {
    let id = new_deploy_id(host)?;
    let mut request =
        DeployRequest::new(id.clone(), system.clone(), details.action).context("no randomness")?;
    request.flake = details.flake.map(str::to_owned);
    request.rev = details.rev.cloned();
    request.allow_downgrade = details.allow_downgrade;
    request.confirm_within_s = details.confirm_within_s;
    let message = Message::new(
        host.clone(),
        Request::Deploy(request),
        now(),
        DEFAULT_LIFETIME_S,
    );
    Ok((id, message.sign(&[key]).to_json()))
}

/// A signed `confirm` of deploy `id` on `host`.
pub fn confirm(host: &HostName, id: &DeployId, key: &SecretKey) -> Result<Vec<u8>> {
    let reference = DeployRef::new(id.clone()).context("no randomness")?;
    let message = Message::new(
        host.clone(),
        Request::Confirm(reference),
        now(),
        DEFAULT_LIFETIME_S,
    );
    Ok(message.sign(&[key]).to_json())
}

/// A signed `rollback` on `host`, starting a deploy with a new id.
pub fn rollback(host: &HostName, key: &SecretKey) -> Result<(DeployId, Vec<u8>)> {
    let id = new_deploy_id(host)?;
    let reference = DeployRef::new(id.clone()).context("no randomness")?;
    let message = Message::new(
        host.clone(),
        Request::Rollback(reference),
        now(),
        DEFAULT_LIFETIME_S,
    );
    Ok((id, message.sign(&[key]).to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_ids_are_unique_and_valid_for_long_names() {
        let host: HostName = "a".repeat(63).parse().expect("host");
        let one = new_deploy_id(&host).expect("id");
        let two = new_deploy_id(&host).expect("id");
        assert_ne!(one, two);
        assert!(one.as_str().len() <= 64);
    }
}
