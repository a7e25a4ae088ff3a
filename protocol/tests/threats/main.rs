//! One module per threat to the trust boundary; each proves that a message
//! carrying that threat is rejected with its own stable code. The fixture
//! checks, for every rejection, that the nonce store was left untouched;
//! `check_order` proves the checks run in PRODUCT.md's order.

mod fixture;

mod accepted;
mod check_order;
mod downgrade;
mod expired;
mod forbidden_kind;
mod malformed_store_path;
mod multiple_signatures;
mod not_utf8;
mod not_yet_valid;
mod oversized;
mod replayed_nonce;
mod tampered_payload;
mod tampered_type;
mod unknown_fields;
mod untrusted_key;
mod window_too_long;
mod wrong_host;
