//! How the forges sign a hook body: a hex HMAC of the exact bytes sent,
//! keyed with the hook's secret. GitHub sends `sha256=<hex>` in
//! `X-Hub-Signature-256` (and `sha1=<hex>` in the older `X-Hub-Signature`);
//! Gitea and Forgejo send the bare SHA-256 hex in `X-Gitea-Signature` /
//! `X-Forgejo-Signature`, and the GitHub-style headers too. GitLab signs
//! nothing: it sends the secret itself in `X-Gitlab-Token`.

use hmac::{Hmac, Mac};

/// Hex HMAC-SHA256 of `body` keyed with `secret`.
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Hex HMAC-SHA1 of `body` keyed with `secret` (GitHub's and Gitea's legacy
/// `X-Hub-Signature`).
pub fn hmac_sha1_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test values in GitHub's "Validating webhook deliveries".
    #[test]
    fn github_documented_vector() {
        assert_eq!(
            hmac_sha256_hex(b"It's a Secret to Everybody", b"Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    /// RFC 4231 test case 2 and RFC 2202 test case 2 (key "Jefe").
    #[test]
    fn rfc_vectors() {
        let data = b"what do ya want for nothing?";
        assert_eq!(
            hmac_sha256_hex(b"Jefe", data),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hmac_sha1_hex(b"Jefe", data),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }
}
