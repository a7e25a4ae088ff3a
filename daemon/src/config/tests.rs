//! The config as written: defaults, key files, permissions, the `[tls]`
//! pair and `[health] ca_file`, and bad configs each saying what is wrong.

use deployd_protocol::Permissions;

use super::*;

fn key(name: &str) -> String {
    deployd_protocol::SecretKey::generate(name.parse().expect("name"))
        .expect("random")
        .public_key()
        .to_string()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

/// A minimal config, and its deploy key and cache key.
fn minimal() -> (String, String, String) {
    let (deploy, cache) = (key("ops-1"), key("kelyus-1"));
    let text = format!(
        "hostname = \"sambirano\"\n[[trusted_keys]]\nkey = \"{deploy}\"\n[nix]\nsubstituters = [\"http://kelyus:5000\"]\ntrusted_public_keys = [\"{cache}\"]\n"
    );
    (text, deploy, cache)
}

#[test]
fn the_product_example_parses_with_defaults() {
    let config = parse(&minimal().0).expect("valid");
    assert_eq!(config.hostname.as_str(), "sambirano");
    assert_eq!(config.file.listen.to_string(), "[::]:9797");
    assert_eq!(config.file.state_dir, PathBuf::from("/var/lib/deployd"));
    let key = config.trusted_keys.get("ops-1").expect("trusted");
    assert_eq!(key.may, Permissions::ALL);
    assert!(!config.file.read_requires_signature);
    assert_eq!(config.file.quarantine_s, 86400);
    assert_eq!(config.file.prepare_keep_s, 86400);
}

#[test]
fn prepare_keep_is_set_or_refused_out_of_bounds() {
    let minimal = minimal().0;
    let set = parse(&format!("prepare_keep_s = 600\n{minimal}")).expect("valid");
    assert_eq!(set.file.prepare_keep_s, 600);
    for wrong in ["0", "99999999999"] {
        let error = parse(&format!("prepare_keep_s = {wrong}\n{minimal}")).expect_err("bounds");
        assert!(error.to_string().contains("prepare_keep_s"), "{error}");
    }
}

#[test]
fn quarantine_is_set_turned_off_or_refused_when_too_long() {
    let minimal = minimal().0;
    let set = parse(&format!("quarantine_s = 600\n{minimal}")).expect("valid");
    assert_eq!(set.file.quarantine_s, 600);
    let off = parse(&format!("quarantine_s = 0\n{minimal}")).expect("valid");
    assert_eq!(off.file.quarantine_s, 0);
    let error = parse(&format!("quarantine_s = 99999999999\n{minimal}")).expect_err("too long");
    assert!(error.to_string().contains("quarantine_s"), "{error}");
}

#[test]
fn permissions_and_key_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("ops.public");
    let (text, deploy, _) = minimal();
    std::fs::write(&key_file, format!("{deploy}\n")).expect("write");
    let text = text.replace(
        &format!("key = \"{deploy}\""),
        &format!("key_file = {:?}\nmay = [\"read\"]", key_file),
    );
    let config = parse(&text).expect("valid");
    let key = config.trusted_keys.get("ops-1").expect("trusted");
    assert!(key.allows(deployd_protocol::Permission::Read));
    assert!(!key.allows(deployd_protocol::Permission::Deploy));
}

#[test]
fn bad_configs_say_what_is_wrong() {
    let (minimal, deploy, cache) = minimal();
    let cases = [
        (
            format!("surprise = 1\n{minimal}"),
            "unknown field `surprise`",
        ),
        (
            minimal.replace("[[trusted_keys]]\nkey", "[[trusted_keys]]\nkeyy"),
            "unknown field",
        ),
        (minimal.replace(&deploy, "ops-1:short"), "trusted key 1"),
        (
            minimal.replace("http://kelyus:5000", "kelyus"),
            "not a store URL",
        ),
        (
            minimal.replace("http://kelyus:5000", "https://alice:s3cret@cache.example/nix"),
            "[nix] substituters: \"https://alice:***@cache.example/nix\" has a password in it; credentials never go in a URL",
        ),
        (
            minimal.replace("http://kelyus:5000", "https://alice@cache.example"),
            "has a user name in it",
        ),
        (
            minimal.replace(
                "http://kelyus:5000",
                "s3://fleet?profile=ci&endpoint=https://minio:s3cret@minio.lan:9000",
            ),
            "endpoint=https://minio:***@minio.lan:9000\" has a password in it",
        ),
        (
            minimal.replace(
                "\"http://kelyus:5000\"",
                "\"http://kelyus:5000\", \"ssh-ng://nix:pw@kelyus\"",
            ),
            "give ssh-ng://nix@kelyus",
        ),
        (
            format!("{minimal}[health]\nhttp = [\"http://monitor:s3cret@127.0.0.1:8080/up\"]\n"),
            "\"http://monitor:***@127.0.0.1:8080/up\" has a user or password in it",
        ),
        (minimal.replace(&cache, "nonsense"), "trusted_public_keys"),
        (
            minimal.replace("hostname = \"sambirano\"", "hostname = \"a b\""),
            "invalid",
        ),
        (format!("state_dir = \"relative\"\n{minimal}"), "absolute"),
        (
            minimal.replace(&format!("[[trusted_keys]]\nkey = \"{deploy}\"\n"), ""),
            "no [[trusted_keys]]",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(&text).expect_err(expected);
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(inner) = cause {
            message.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        assert!(message.contains(expected), "{expected}: {message}");
        // The TOML parser quotes the line it stopped at: `main` masks it.
        if !message.contains("TOML parse error") {
            assert!(!message.contains("s3cret"), "{message}");
        }
    }
}

#[test]
fn where_cache_credentials_go_instead() {
    let (minimal, _, _) = minimal();
    let text = minimal.replace(
        "http://kelyus:5000",
        "https://alice:s3cret@cache.example/nix",
    );
    let message = parse(&text).expect_err("a password").to_string();
    assert!(
        message.ends_with("put them in Nix's netrc-file: a line \"machine cache.example login alice password PASSWORD\" in a file kept secret, named by netrc-file in nix.conf (on NixOS: nix.settings.netrc-file = \"/run/agenix/nix-netrc\")"),
        "{message}"
    );
    for allowed in [
        "ssh-ng://nix-ssh@kelyus",
        "s3://fleet?profile=ci&region=eu-west-1",
    ] {
        parse(&minimal.replace("http://kelyus:5000", allowed)).expect(allowed);
    }
}

use crate::test_certificates as certificates;

/// The error and its causes, as `check-config` prints them.
fn refusal(text: &str, key_files: KeyFiles) -> String {
    let error = Config::parse(text, Path::new("test.toml"), key_files).expect_err("refused");
    crate::api::chain(&error)
}

#[test]
fn tls_pairs_are_checked_when_key_files_are_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = certificates::TestCa::new(dir.path(), "ca");
    let (a, b) = (ca.issue("a", "DNS:a"), ca.issue("b", "DNS:b"));
    let (minimal, _, _) = minimal();
    let tls = |cert: &Path, key: &Path| {
        format!(
            "{minimal}[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    let config = parse(&tls(&a.cert, &a.key)).expect("a pair that loads");
    let section = config.file.tls.expect("[tls]");
    assert_eq!(
        (section.cert_file, section.key_file),
        (a.cert.clone(), a.key.clone())
    );

    assert_eq!(
        refusal(&tls(&a.cert, &b.key), KeyFiles::Read),
        format!(
            "[tls]: key_file {} is not the private key of the certificate in cert_file {}",
            b.key.display(),
            a.cert.display()
        )
    );
    let missing = dir.path().join("missing.pem");
    assert!(
        refusal(&tls(&a.cert, &missing), KeyFiles::Read).starts_with(&format!(
            "[tls]: cannot read key_file {}: No such file",
            missing.display()
        ))
    );
    assert_eq!(
        refusal(&tls(&a.key, &a.key), KeyFiles::Read),
        format!(
            "[tls]: cert_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----): no items found",
            a.key.display()
        )
    );
    // At build time the files do not exist yet: only their paths count.
    Config::parse(
        &tls(&missing, &missing),
        Path::new("t.toml"),
        KeyFiles::PathsOnly,
    )
    .expect("absolute paths are enough");
    for key_files in [KeyFiles::Read, KeyFiles::PathsOnly] {
        assert_eq!(
            refusal(&tls(Path::new("cert.pem"), &a.key), key_files),
            "[tls] cert_file must be an absolute path, not \"cert.pem\""
        );
        assert_eq!(
            refusal(&tls(&a.cert, Path::new("key.pem")), key_files),
            "[tls] key_file must be an absolute path, not \"key.pem\""
        );
    }
    let half = format!("{minimal}[tls]\ncert_file = \"/etc/a.pem\"\n");
    assert!(refusal(&half, KeyFiles::PathsOnly).contains("missing field `key_file`"));
    let extra = format!("{minimal}[tls]\ncert_file = \"/a\"\nkey_file = \"/b\"\nkey = \"x\"\n");
    assert!(refusal(&extra, KeyFiles::PathsOnly).contains("unknown field `key`"));
}

#[test]
fn health_ca_files_hold_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = certificates::TestCa::new(dir.path(), "fleet-ca");
    let (minimal, _, _) = minimal();
    let with_ca = |path: &Path| {
        format!(
            "{minimal}[health]\nhttp = [\"https://127.0.0.1:8443/up\"]\nca_file = {:?}\n",
            path.display().to_string()
        )
    };
    let config = parse(&with_ca(&ca.cert())).expect("valid");
    assert_eq!(config.file.health.ca_file, Some(ca.cert()));
    assert!(config.file.health.http[0].is_https());
    let not_pem = dir.path().join("fleet-ca.key");
    assert_eq!(
        refusal(&with_ca(&not_pem), KeyFiles::Read),
        format!(
            "[health]: ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----): no items found",
            not_pem.display()
        )
    );
    Config::parse(
        &with_ca(&dir.path().join("later.pem")),
        Path::new("t.toml"),
        KeyFiles::PathsOnly,
    )
    .expect("absolute paths are enough");
    assert_eq!(
        refusal(&with_ca(Path::new("ca.pem")), KeyFiles::PathsOnly),
        "[health] ca_file must be an absolute path, not \"ca.pem\""
    );
}

#[test]
fn pull_channels_parse_with_defaults_and_bounds() {
    let (minimal, _, _) = minimal();
    let config = parse(&minimal).expect("valid");
    assert!(config.file.pull.channels.is_empty());
    assert_eq!(config.file.pull.interval_s, 60);
    assert_eq!(
        config.file.pull.max_desired_age_s,
        DEFAULT_MAX_DESIRED_AGE_S
    );
    let config = parse(&format!(
        "{minimal}[pull]\nchannels = [\"https://deploy.example.org/v1/channel\", \"file:///srv/channel\"]\ninterval_s = 5\nmax_desired_age_s = 86400\n"
    ))
    .expect("valid");
    assert_eq!(config.file.pull.channels.len(), 2);
    assert_eq!(config.file.pull.interval_s, 5);
    for (pull, expected) in [
        (
            "interval_s = 0",
            "[pull] interval_s must be 1 to 86400 seconds",
        ),
        (
            "interval_s = 86401",
            "[pull] interval_s must be 1 to 86400 seconds",
        ),
        (
            "max_desired_age_s = 31708801",
            "[pull] max_desired_age_s must be 1 to 31622400 seconds (366 days)",
        ),
        (
            "channels = [\"http://h/c\", \"http://h/c/\"]",
            "[pull] channels: http://h/c is listed twice",
        ),
    ] {
        let error = parse(&format!("{minimal}[pull]\n{pull}\n")).expect_err(pull);
        assert_eq!(error.to_string(), expected, "{pull}");
    }
    for (channel, expected) in [
        ("https://alice:s3cret@h/c", "alice:***@h/c"),
        ("s3://bucket/prefix", "is not a channel"),
        ("file://relative", "is not a channel"),
    ] {
        let error =
            parse(&format!("{minimal}[pull]\nchannels = [\"{channel}\"]\n")).expect_err(channel);
        let text = crate::api::chain(&error);
        // The TOML parser quotes the line: main masks the whole message.
        let shown = mask_credentials(&text);
        assert!(shown.contains(expected), "{channel}: {shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
