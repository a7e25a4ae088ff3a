//! The signed `confirm`s of a rollout with magic rollback. A file key signs
//! each host's confirm when the host waits for it. A key in `ssh-agent`
//! signs the confirms of every host of the rollout at once, when the first
//! host waits (one more touch of a security key, not one per host); the
//! others use the same message.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use deployd_protocol::{DeployId, HostName};
use tokio::sync::OnceCell;

use crate::keys::DeployKey;
use crate::sign;

/// Signs the confirms of one rollout.
pub struct Confirmer {
    key: DeployKey,
    /// Every host's deploy, when the agent signs them together.
    deploys: Vec<(HostName, DeployId)>,
    signed: OnceCell<Result<BTreeMap<HostName, Vec<u8>>, String>>,
}

impl Confirmer {
    /// Confirms for the deploys of a rollout (`deploys`), signed with `key`.
    pub fn new(key: DeployKey, deploys: Vec<(HostName, DeployId)>) -> Confirmer {
        Confirmer {
            key,
            deploys,
            signed: OnceCell::new(),
        }
    }

    /// The signed confirm of deploy `id` on `host`.
    pub async fn envelope(&self, host: &HostName, id: &DeployId) -> Result<Vec<u8>> {
        let together = matches!(self.key, DeployKey::Agent(_))
            && self
                .deploys
                .iter()
                .any(|(name, deploy)| name == host && deploy == id);
        if !together {
            let message = sign::confirm_message(host, id, sign::now())?;
            let mut envelopes =
                sign::sign_messages_off_runtime(vec![message], self.key.clone()).await?;
            return envelopes
                .pop()
                .ok_or_else(|| anyhow!("no envelope was signed"));
        }
        let signed = self
            .signed
            .get_or_init(|| async { self.sign_all().await.map_err(|error| format!("{error:#}")) })
            .await;
        match signed {
            Ok(envelopes) => envelopes
                .get(host)
                .cloned()
                .ok_or_else(|| anyhow!("no confirm was signed for {host}")),
            Err(why) => Err(anyhow!("{why}")),
        }
    }

    async fn sign_all(&self) -> Result<BTreeMap<HostName, Vec<u8>>> {
        let now = sign::now();
        let messages = self
            .deploys
            .iter()
            .map(|(host, id)| sign::confirm_message(host, id, now))
            .collect::<Result<Vec<_>>>()?;
        let envelopes = sign::sign_messages_off_runtime(messages, self.key.clone()).await?;
        Ok(self
            .deploys
            .iter()
            .map(|(host, _)| host.clone())
            .zip(envelopes)
            .collect())
    }
}
