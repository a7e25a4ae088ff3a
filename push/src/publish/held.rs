//! What a channel holds for a host, read *without* verifying it: push
//! publish uses it only to choose the next sequence (one above the held
//! one) and to refuse a revision that does not descend from the held one's
//! `rev`. Nothing else is taken from it. A channel that lies can at worst
//! make push publish choose a higher sequence or refuse: the hosts verify
//! every state themselves and apply only a sequence above the last one
//! they applied.

use anyhow::{bail, Context, Result};
use deployd_protocol::{Envelope, Revision, DESIRED_PAYLOAD_TYPE};

use super::channel::Stored;
use crate::revision::FlakeRepository;

/// The state a channel holds for a host, as far as push publish reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its sequence.
    pub sequence: u64,
    /// The revision it deploys, when it says.
    pub rev: Option<Revision>,
    /// As read: the state after it is written only where the channel
    /// still holds this one.
    pub stored: Stored,
}

/// The unverified fields read from a held state's payload.
#[derive(serde::Deserialize)]
struct Fields {
    sequence: u64,
    #[serde(default)]
    rev: Option<Revision>,
}

impl Held {
    /// Reads the held state's envelope (its signatures are not checked).
    pub fn parse(stored: Stored) -> Result<Held> {
        let envelope = Envelope::parse(&stored.bytes).context("it is not a signed envelope")?;
        if envelope.payload_type() != DESIRED_PAYLOAD_TYPE {
            bail!(
                "it is not a desired state (payload type {:?})",
                envelope.payload_type()
            );
        }
        let fields: Fields = serde_json::from_slice(envelope.payload())
            .context("its payload has no sequence or a bad rev")?;
        Ok(Held {
            sequence: fields.sequence,
            rev: fields.rev,
            stored,
        })
    }
}

/// The sequence of the next state after `held` (none: 1).
pub fn next_sequence(held: Option<&Held>) -> Result<u64> {
    match held {
        None => Ok(1),
        Some(held) => held.sequence.checked_add(1).with_context(|| {
            format!(
                "the channel holds sequence {}: there is none above it",
                held.sequence
            )
        }),
    }
}

/// Why `rev` may not replace `held` (its revision is not an ancestor of
/// `rev`, or unknown here), as push refuses a host running that revision;
/// `None` when it may, or when `allow_downgrade`.
pub fn downgrade_refusal(
    repository: &FlakeRepository,
    rev: &Revision,
    held: Option<&Held>,
    allow_downgrade: bool,
) -> Option<String> {
    let held_rev = held?.rev.as_ref()?;
    if allow_downgrade {
        return None;
    }
    match repository.descends_from(rev, held_rev) {
        Some(true) => None,
        Some(false) => Some(format!(
            "the channel holds {held_rev}, and {rev} does not descend from it; pass --allow-downgrade to publish it anyway"
        )),
        None => Some(format!(
            "the channel holds {held_rev}, which this repository does not have (fetch its history), so a downgrade cannot be ruled out; pass --allow-downgrade to publish anyway"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_git::git;
    use deployd_protocol::{Action, DeployRequest, DesiredState, SecretKey};

    fn state(sequence: u64, rev: Option<&str>) -> Stored {
        Stored::from(signed_state(sequence, rev))
    }

    fn signed_state(sequence: u64, rev: Option<&str>) -> Vec<u8> {
        let key = SecretKey::generate("ops-1".parse().expect("name")).expect("key");
        let mut deploy = DeployRequest::new(
            "pi-1".parse().expect("id"),
            "/nix/store/0c8rfq3blmslvm3w5qd4ymrhng1nkdk9-x"
                .parse()
                .expect("path"),
            Action::Switch,
        )
        .expect("deploy");
        deploy.rev = rev.map(|rev| rev.parse().expect("rev"));
        DesiredState::new("pi".parse().expect("host"), deploy, sequence, 1, 60)
            .sign(&[&key])
            .to_json()
    }

    #[test]
    fn the_held_sequence_and_rev_choose_the_next() {
        let rev = "0123456789abcdef0123456789abcdef01234567";
        let held = Held::parse(state(7, Some(rev))).expect("held");
        assert_eq!(held.sequence, 7);
        assert_eq!(held.rev.as_ref().map(Revision::as_str), Some(rev));
        assert_eq!(next_sequence(Some(&held)).expect("next"), 8);
        assert_eq!(next_sequence(None).expect("first"), 1);
        let last = Held {
            sequence: u64::MAX,
            rev: None,
            stored: state(u64::MAX, None),
        };
        assert!(next_sequence(Some(&last)).is_err());
        assert_eq!(Held::parse(state(1, None)).expect("no rev").rev, None);

        for junk in [&b"{}"[..], b"not json", b""] {
            assert!(Held::parse(Stored::from(junk.to_vec())).is_err());
        }
        let deploy = Envelope::sign(
            deployd_protocol::PAYLOAD_TYPE,
            b"{\"sequence\":3}".to_vec(),
            &[&SecretKey::generate("ops-1".parse().expect("name")).expect("key")],
        );
        let error = Held::parse(Stored::from(deploy.to_json())).expect_err("another payload type");
        assert!(error.to_string().contains("not a desired state"), "{error}");
    }

    #[test]
    fn a_revision_that_does_not_descend_from_the_held_one_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "one"]);
        let one = git(dir.path(), &["rev-parse", "HEAD"]);
        git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "two"]);
        let two = git(dir.path(), &["rev-parse", "HEAD"]);
        let repository = FlakeRepository::open(dir.path()).expect("open");
        let rev = |text: &str| -> Revision { text.parse().expect("rev") };
        let held = |text: &str| Held {
            sequence: 1,
            rev: Some(rev(text)),
            stored: state(1, Some(text)),
        };

        assert_eq!(
            downgrade_refusal(&repository, &rev(&two), Some(&held(&one)), false),
            None
        );
        assert_eq!(
            downgrade_refusal(&repository, &rev(&two), None, false),
            None
        );
        let refused = downgrade_refusal(&repository, &rev(&one), Some(&held(&two)), false)
            .expect("a downgrade");
        assert!(refused.contains("does not descend"), "{refused}");
        assert_eq!(
            downgrade_refusal(&repository, &rev(&one), Some(&held(&two)), true),
            None
        );
        let unknown = held("fedcba9876543210fedcba9876543210fedcba98");
        let refused =
            downgrade_refusal(&repository, &rev(&two), Some(&unknown), false).expect("unknown");
        assert!(refused.contains("does not have"), "{refused}");
    }
}
