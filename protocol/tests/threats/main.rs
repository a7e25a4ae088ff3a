//! One module per threat to the trust boundary; each proves that a message
//! carrying that threat is rejected with its own stable code. The fixture
//! checks, for every rejection, that the nonce store was left untouched
//! (`ssh_fixture` likewise for SSH keys, certificates and security keys,
//! which the `ssh_*` and `rollout_*` threats use); `check_order` proves the checks run in the wire format's order.

mod fixture;
mod ssh_fixture;

mod accepted;
mod check_order;
mod desired_state;
mod downgrade;
mod expired;
mod forbidden_kind;
mod host_report;
mod malformed_store_path;
mod multiple_signatures;
mod not_utf8;
mod not_yet_valid;
mod oversized;
mod replayed_nonce;
mod rollout_accepted;
mod rollout_conflicting_fields;
mod rollout_downgrade;
mod rollout_replayed;
mod rollout_wrong_host;
mod ssh_accepted;
mod ssh_broken_ca_signature;
mod ssh_certificate_expired;
mod ssh_certificate_not_yet_valid;
mod ssh_certificate_permissions;
mod ssh_certificate_principal;
mod ssh_critical_option;
mod ssh_host_certificate;
mod ssh_keyid_mismatch;
mod ssh_malleable_blob;
mod ssh_namespace_and_hash;
mod ssh_security_key_touch;
mod ssh_untrusted_key;
mod ssh_weak_ca_key;
mod tampered_payload;
mod tampered_type;
mod unknown_fields;
mod untrusted_key;
mod window_too_long;
mod wrong_host;
