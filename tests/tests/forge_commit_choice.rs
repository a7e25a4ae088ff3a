//! What a commit may choose, when a push to the forge deploys it: the
//! systems (its flake) and the hosts (push.toml), nothing that the build
//! machine holds. A commit whose push.toml names the service's own deploy
//! key as `sign_key_file` and a folder of its choice as `copy_to` gets
//! nothing signed with that key and nothing copied there: push serve builds
//! by its own `[build]`, and says in its log what it ignored. A commit whose
//! flake has `path:` inputs to the service's forge token and deploy key gets
//! neither into the store: the flake is evaluated by the build user, who
//! cannot read them, so its build fails and says why. And a secret file the
//! build user could read stops every build before anything is evaluated,
//! naming the file.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deployd_lab::forge::ForgeKind;
use deployd_lab::push_serve::{own, BUILD_ID};
use support::deployd::status;
use support::forge::{states_of, ForgeFleet};
use support::push::system_at;

/// The entries of the machine's store.
fn store_paths() -> BTreeSet<PathBuf> {
    std::fs::read_dir("/nix/store")
        .expect("/nix/store")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect()
}

/// Whether `path` (a file, or a directory and everything in it) holds
/// `needle` in a file's contents or a link's target.
fn holds(path: &Path, needle: &[u8]) -> bool {
    let Ok(metadata) = path.symlink_metadata() else {
        return false;
    };
    if metadata.is_dir() {
        return std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|entry| holds(&entry.path(), needle))
            })
            .unwrap_or(false);
    }
    let bytes = if metadata.file_type().is_symlink() {
        std::fs::read_link(path)
            .map(|target| target.into_os_string().into_encoded_bytes())
            .unwrap_or_default()
    } else {
        std::fs::read(path).unwrap_or_default()
    };
    bytes.windows(needle.len()).any(|window| window == needle)
}

/// The narinfo files under `dir`, with their text.
fn narinfos(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "narinfo"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("narinfo");
            (path, text)
        })
        .collect()
}

/// Waits until the service recorded the rollout of `rev`; returns it.
fn wait_for_rollout(fleet: &ForgeFleet, rev: &str) -> serde_json::Value {
    let mut rollout = serde_json::Value::Null;
    let ended = support::wait_until(Duration::from_secs(180), || {
        let status = fleet.service_status();
        rollout = status["recent"]
            .as_array()
            .and_then(|recent| recent.iter().find(|r| r["rev"] == rev).cloned())
            .unwrap_or_default();
        !rollout.is_null()
    });
    assert!(ended, "no rollout of {rev}:\n{}", fleet.service_log());
    rollout
}

#[test]
fn push_toml_chooses_neither_the_signing_key_nor_where_closures_go() {
    let mut fleet = ForgeFleet::up(1, ForgeKind::Forgejo);
    let host = fleet.lab.hosts()[0].clone();
    let deploy_key = fleet.service_file("ci-1.secret");
    let elsewhere = tempfile::tempdir().expect("a folder of the commit's choice");

    // push.toml: the service's deploy key as the cache signing key, and a
    // folder of the commit's choice as the cache.
    let inventory = fleet.lab.flake().dir().join("push.toml");
    std::fs::write(
        &inventory,
        format!(
            "[defaults]\nport = 9797\ncopy_to = \"file://{}\"\nsign_key_file = \"{}\"\n\n[hosts.{}]\naddress = \"{}\"\n",
            elsewhere.path().display(),
            deploy_key.display(),
            host.name,
            host.address
        ),
    )
    .expect("push.toml");
    let before = fleet.lab.flake().head().expect("head");
    let steering = fleet
        .lab
        .flake_mut()
        .commit("Sign with the service's key, copy elsewhere", |settings| {
            settings.label += 1
        })
        .expect("commit");
    assert_eq!(fleet.hook(&before, &steering), 202);
    let rollout = wait_for_rollout(&fleet, &steering);
    let log = fleet.service_log();
    let copied = narinfos(elsewhere.path());
    assert!(
        copied.is_empty(),
        "copied where the commit said: {copied:?}\n{log}"
    );
    for (path, text) in narinfos(&fleet.lab.cache_dir()) {
        assert!(
            !text.contains("Sig: ci-1:"),
            "{} signed with ci-1: {text}",
            path.display()
        );
    }
    // It was built, copied and signed by the service's own [build], and deployed.
    assert_eq!(rollout["outcome"], "succeeded", "{rollout}\n{log}");
    assert_eq!(
        host.current_system(),
        Some(system_at(fleet.lab.flake().dir(), &steering, &host.name))
    );
    for field in ["copy_to", "sign_key_file"] {
        assert!(
            log.lines().any(|line| line.contains("push.toml")
                && line.contains(field)
                && line.contains("ignored")),
            "no warning naming {field}:\n{log}"
        );
    }
}

#[test]
fn a_flake_input_cannot_copy_the_service_secrets_into_the_store() {
    let mut fleet = ForgeFleet::up(1, ForgeKind::Forgejo);
    let host = fleet.lab.hosts()[0].clone();
    let deploy_key = fleet.service_file("ci-1.secret");
    let token = fleet.service_file("token");
    // Inputs that copy the forge token and the deploy key into the store,
    // if whoever evaluates the flake can read them.
    let flake = fleet.lab.flake().dir().join("flake.nix");
    let text = std::fs::read_to_string(&flake).expect("flake.nix");
    let leaking = text.replace(
        "outputs = {self}:",
        &format!(
            "inputs.token = {{ url = \"path:{}\"; flake = false; }};\n  \
             inputs.key = {{ url = \"path:{}\"; flake = false; }};\n  \
             outputs = {{self, ...}}:",
            token.display(),
            deploy_key.display()
        ),
    );
    assert_ne!(leaking, text, "the toy flake changed: {text}");
    std::fs::write(&flake, leaking).expect("flake.nix");
    let store_before = store_paths();
    let before = fleet.lab.flake().head().expect("head");
    let leak = fleet
        .lab
        .flake_mut()
        .commit("Read the service's secrets", |settings| settings.label += 1)
        .expect("commit");
    assert_eq!(fleet.hook(&before, &leak), 202);
    let rollout = wait_for_rollout(&fleet, &leak);
    let log = fleet.service_log();
    let secrets = [
        std::fs::read(&token).expect("token"),
        std::fs::read(&deploy_key).expect("key"),
    ];
    for path in store_paths().difference(&store_before) {
        for secret in &secrets {
            assert!(
                !holds(path, secret),
                "{} holds a secret of the service\n{log}",
                path.display()
            );
        }
    }
    // The build failed, and says why; nothing was deployed.
    let statuses = fleet.wait_for_final_statuses(&leak, Duration::from_secs(60));
    assert_eq!(states_of(&statuses, &host.name), ["pending", "error"]);
    let failed = rollout["hosts"][0]["message"].as_str().unwrap_or_default();
    assert!(
        failed.contains("build failed") && failed.contains("Permission denied"),
        "{rollout}"
    );
    // (Not evaluated here either: this test's own Nix runs as root.)
    assert_eq!(status(&fleet.lab, &host).current_deploy, None);
}

#[test]
fn a_secret_the_build_user_can_read_stops_every_build_and_is_named() {
    let mut fleet = ForgeFleet::up(1, ForgeKind::Gitea);
    let host = fleet.lab.hosts()[0].clone();
    // The token readable by the build user's group (an agenix secret of the
    // service's group, given `mode = "0440"`, say).
    let token = fleet.service_file("token");
    own(&token, 0, BUILD_ID, 0o640).expect("chmod");
    let (rev, answer) = fleet.push_change();
    assert_eq!(answer, 202);
    let rollout = wait_for_rollout(&fleet, &rev);
    let message = rollout["hosts"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("build failed")
            && message.contains("can read the secret file")
            && message.contains(&token.display().to_string()),
        "{rollout}\n{}",
        fleet.service_log()
    );
    assert!(
        !message.contains("evaluating"),
        "nothing was evaluated: {message}"
    );
    assert_eq!(status(&fleet.lab, &host).current_deploy, None);
}
