//! Building and signing the messages `push` sends: one per host with a
//! key file, one rollout message for all the hosts signed together (a
//! batch, see [`crate::batches`]) with a key in `ssh-agent`.

use anyhow::{Context, Result};
use deployd_protocol::{
    rollout_payload, Action, DeployId, DeployRef, DeployRequest, HostName, Message, Nonce, Request,
    Revision, StorePath, DEFAULT_LIFETIME_S, MAX_ROLLOUT_HOSTS, PAYLOAD_TYPE, ROLLOUT_PAYLOAD_TYPE,
};

use crate::keys::DeployKey;

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
    /// The specialisation to activate.
    pub specialisation: Option<&'a str>,
    /// How long the message is valid, in seconds (1 to 900: the wire
    /// format's window).
    pub lifetime_s: u64,
    /// Deploy even a system quarantined on the host (`--retry-failed`).
    pub retry_failed: bool,
}

/// A deploy message of `system` to `host`, with a new deploy id, valid
/// from `now`.
pub fn deploy_message(
    host: &HostName,
    system: &StorePath,
    details: &DeployDetails<'_>,
    now: u64,
) -> Result<Message> {
    let id = new_deploy_id(host)?;
    let mut request =
        DeployRequest::new(id, system.clone(), details.action).context("no randomness")?;
    request.flake = details.flake.map(str::to_owned);
    request.rev = details.rev.cloned();
    request.allow_downgrade = details.allow_downgrade;
    request.confirm_within_s = details.confirm_within_s;
    request.specialisation = details.specialisation.map(str::to_owned);
    request.retry_failed = details.retry_failed;
    Ok(Message::new(
        host.clone(),
        Request::Deploy(request),
        now,
        details.lifetime_s,
    ))
}

/// A `confirm` of deploy `id` on `host`.
pub fn confirm_message(host: &HostName, id: &DeployId, now: u64) -> Result<Message> {
    let reference = DeployRef::new(id.clone()).context("no randomness")?;
    Ok(Message::new(
        host.clone(),
        Request::Confirm(reference),
        now,
        DEFAULT_LIFETIME_S,
    ))
}

/// A `rollback` on `host`, starting a deploy with a new id, issued at `now`
/// (the same for every host of one `push rollback`, so that an agent signs
/// them all at once).
pub fn rollback_message(host: &HostName, now: u64) -> Result<Message> {
    let id = new_deploy_id(host)?;
    let reference = DeployRef::new(id).context("no randomness")?;
    Ok(Message::new(
        host.clone(),
        Request::Rollback(reference),
        now,
        DEFAULT_LIFETIME_S,
    ))
}

/// Signs `messages`, one envelope for each, in their order. A file key
/// signs each on its own; the agent signs once for all of them (once per
/// [`MAX_ROLLOUT_HOSTS`]): one rollout message, the same envelope for every
/// host it names. Blocking with the agent: call it off the runtime.
pub fn sign_messages(messages: &[Message], key: &DeployKey) -> Result<Vec<Vec<u8>>> {
    match key {
        DeployKey::File(_) => messages
            .iter()
            .map(|message| key.sign(PAYLOAD_TYPE, message.to_payload_bytes()))
            .collect(),
        DeployKey::Agent(_) if messages.len() == 1 => {
            Ok(vec![key.sign(PAYLOAD_TYPE, messages[0].to_payload_bytes())?])
        }
        DeployKey::Agent(_) => {
            let mut envelopes = Vec::with_capacity(messages.len());
            for part in messages.chunks(MAX_ROLLOUT_HOSTS) {
                let payload = rollout_payload(part)?;
                let envelope = key.sign(ROLLOUT_PAYLOAD_TYPE, payload)?;
                envelopes.extend(std::iter::repeat_n(envelope, part.len()));
            }
            Ok(envelopes)
        }
    }
}

/// [`sign_messages`] off the async runtime's threads.
pub async fn sign_messages_off_runtime(
    messages: Vec<Message>,
    key: DeployKey,
) -> Result<Vec<Vec<u8>>> {
    tokio::task::spawn_blocking(move || sign_messages(&messages, &key))
        .await
        .context("the signing task failed")?
}

/// The deploy id a message starts or names.
pub fn deploy_id(message: &Message) -> Option<&DeployId> {
    match &message.request {
        Request::Deploy(deploy) => Some(&deploy.deploy_id),
        Request::Confirm(reference) | Request::Rollback(reference) => Some(&reference.deploy_id),
        Request::Read(_) => None,
    }
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

    #[test]
    fn retry_failed_is_signed_only_when_asked_for() {
        let host: HostName = "sambirano".parse().expect("host");
        let system: StorePath = "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x"
            .parse()
            .expect("path");
        let mut details = DeployDetails {
            action: Action::Switch,
            flake: None,
            rev: None,
            allow_downgrade: false,
            confirm_within_s: None,
            specialisation: None,
            lifetime_s: 300,
            retry_failed: false,
        };
        let plain = deploy_message(&host, &system, &details, 1).expect("message");
        let payload = String::from_utf8(plain.to_payload_bytes()).expect("utf-8");
        assert!(!payload.contains("retry_failed"), "{payload}");
        details.retry_failed = true;
        let retry = deploy_message(&host, &system, &details, 1).expect("message");
        let payload = String::from_utf8(retry.to_payload_bytes()).expect("utf-8");
        assert!(payload.contains(r#""retry_failed":true"#), "{payload}");
    }
}
