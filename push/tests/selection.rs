//! How the real `push` finds its hosts and its flake, as operators are used
//! to: `--on` with names, globs and `@tags`, a host named several ways
//! deployed once (counted at a stand-in deployd), `--flake DIR#HOST`,
//! push.toml in a parent directory, and the warnings for a dirty work tree
//! and for a key git could take into the Nix store.

mod support;

use std::collections::BTreeSet;

use support::fake_host::{FakeHost, HOST};
use support::fleet::{git, text, Fleet};

/// The hosts of the summary or status table: the first word of every line
/// after the header, but for the summary's `HOST: why` details.
fn hosts_listed(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| !word.ends_with(':'))
        .map(str::to_owned)
        .collect()
}

/// A fleet of `web-1`, `web-2` (tags web, prod), `db-1` (prod) and `lab`,
/// none of them listening.
fn unreachable_fleet() -> Fleet {
    let mut inventory = String::new();
    for (host, tags) in [
        ("web-1", "\"web\", \"prod\""),
        ("web-2", "\"web\", \"prod\""),
        ("db-1", "\"prod\""),
        ("lab", ""),
    ] {
        inventory.push_str(&format!(
            "[hosts.{host}]\naddress = \"127.0.0.1\"\nport = 9\ntags = [{tags}]\n"
        ));
    }
    Fleet::new(&["web-1", "web-2", "db-1", "lab"], &inventory)
}

#[test]
fn on_selects_by_tag_glob_and_name() {
    let fleet = unreachable_fleet();
    let listed = |args: &[&str]| {
        let output = fleet.push(args);
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {stdout}\n{stderr}"
        );
        hosts_listed(&stdout)
    };
    let set = |hosts: &[&str]| {
        hosts
            .iter()
            .map(|host| host.to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        listed(&["status", "--on", "@web"]),
        set(&["web-1", "web-2"])
    );
    assert_eq!(
        listed(&["status", "--on", "@prod,lab"]),
        set(&["web-1", "web-2", "db-1", "lab"])
    );
    assert_eq!(
        listed(&["status", "--on", "web-?"]),
        set(&["web-1", "web-2"])
    );
    assert_eq!(
        listed(&["status", "--on", "[dl]*", "--host", "web-2"]),
        set(&["db-1", "lab", "web-2"])
    );
    assert_eq!(listed(&["status"]), set(&["web-1", "web-2", "db-1", "lab"]));
    // A deploy and a rollback select the same way (the hosts are unreachable).
    assert_eq!(
        listed(&["--on", "@prod", "--on", "db-*"]),
        set(&["web-1", "web-2", "db-1"])
    );
    assert_eq!(
        listed(&["rollback", "--on", "web-*"]),
        set(&["web-1", "web-2"])
    );

    for (on, expected) in [
        (
            "@staging",
            "--on @staging: no host of push.toml has the tag staging",
        ),
        ("mail-*", "--on mail-*: matches no host of push.toml"),
        (
            "web-3",
            "--on web-3: unknown host web-3: it is not in push.toml",
        ),
    ] {
        for command in [
            &["--on", on][..],
            &["status", "--on", on],
            &["rollback", "--on", on],
        ] {
            let output = fleet.push(command);
            let (_, stderr) = text(&output);
            assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
            assert_eq!(stderr.trim(), format!("push: {expected}"), "{command:?}");
        }
    }
    let output = fleet.push(&["--on", "@not a tag"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).1.contains("a tag is a plain word"),
        "{:?}",
        text(&output)
    );
}

#[test]
fn a_host_named_every_way_is_deployed_once() {
    let host = FakeHost::http();
    let fleet = Fleet::new(
        &[HOST, "isalo"],
        &format!(
            "[hosts.{HOST}]\naddress = \"127.0.0.1\"\nport = {}\ntags = [\"prod\"]\n\
             [hosts.isalo]\naddress = \"127.0.0.1\"\nport = 9\n",
            host.address.port()
        ),
    );
    // From a directory below the flake's root: push.toml is found above,
    // and its key_file is relative to where it was found.
    let output = fleet.push_in(
        &fleet.repo().join("hosts"),
        &[
            "--flake",
            &format!(".#{HOST}"),
            "--host",
            HOST,
            "--on",
            &format!("{HOST},samb*,@prod"),
        ],
    );
    let (stdout, stderr) = text(&output);
    let requests = host.requests();
    let count = |start: &str| {
        requests
            .iter()
            .filter(|request| request.starts_with(start))
            .count()
    };
    assert_eq!(count("POST /v1/deploy"), 1, "{requests:?}\n{stderr}");
    assert_eq!(count("GET /v1/status"), 1, "{requests:?}");
    // The stand-in refuses the deploy itself (it knows no POST): the point
    // is that it was asked once.
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(hosts_listed(&stdout).len(), 1, "{stdout}");
    let rev = git(&fleet.repo(), &["rev-parse", "HEAD"]);
    assert!(
        stderr.contains(&format!("push: revision {rev} to {HOST}\n")),
        "{stderr}"
    );
}

#[test]
fn a_dirty_work_tree_is_named_and_only_the_commit_is_deployed() {
    let host = FakeHost::http();
    let fleet = Fleet::new(
        &[HOST],
        &format!(
            "[hosts.{HOST}]\naddress = \"127.0.0.1\"\nport = {}\n",
            host.address.port()
        ),
    );
    let repo = fleet.repo();
    let warnings = |stderr: &str| -> Vec<String> {
        stderr
            .lines()
            .filter(|line| line.starts_with("push: warning:") && !line.contains("sending anyway"))
            .map(str::to_owned)
            .collect()
    };

    // push.toml and the key are not committed, and git does not ignore the key.
    let (_, stderr) = text(&fleet.push(&["--all"]));
    let key = repo.canonicalize().expect("repo").join("keys/ops.secret");
    assert_eq!(
        warnings(&stderr),
        [
            format!("push: warning: the work tree has uncommitted changes (2 files, e.g. keys/ops.secret); deploying the committed revision {} only", &git(&repo, &["rev-parse", "HEAD"])[..12]),
            format!("push: warning: the deploy key {} lies inside the flake's git work tree and git does not ignore it: `git add -A` would put it in the world-readable Nix store (keep it outside the repository, or list it in .gitignore)", key.display()),
        ],
        "{stderr}"
    );

    // Ignored and committed: no warning at all.
    std::fs::write(repo.join(".gitignore"), "/keys/\n").expect(".gitignore");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "push.toml"]);
    let (_, stderr) = text(&fleet.push(&["--all"]));
    assert_eq!(warnings(&stderr), Vec::<String>::new(), "{stderr}");

    // Changes to tracked files and a new file: named, and not deployed.
    let committed = git(&repo, &["rev-parse", "HEAD"]);
    let flake = std::fs::read_to_string(repo.join("flake.nix")).expect("flake");
    std::fs::write(
        repo.join("flake.nix"),
        flake.replace("toy-system-", "dirty-"),
    )
    .expect("edit");
    std::fs::write(repo.join("hosts/new.nix"), "{ }\n").expect("new file");
    std::fs::write(
        repo.join("in-tree.secret"),
        std::fs::read(repo.join("keys/ops.secret")).expect("key"),
    )
    .expect("key in the tree");
    let output = fleet.push(&["--all", "--key", "in-tree.secret"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        warnings(&stderr)[0],
        format!("push: warning: the work tree has uncommitted changes (3 files, e.g. flake.nix); deploying the committed revision {} only", &committed[..12]),
        "{stderr}"
    );
    assert!(
        warnings(&stderr)[1]
            .contains("the deploy key in-tree.secret lies inside the flake's git work tree"),
        "{stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let root = std::fs::read_link(fleet.dir.path().join("state/deployd/gc-roots").join(HOST))
        .expect("the GC root of what was built");
    let built = root.to_string_lossy();
    assert!(built.ends_with("-toy-system-sambirano"), "{built}");
}

#[test]
fn without_push_toml_the_directories_searched_are_named() {
    let fleet = unreachable_fleet();
    let repo = fleet.repo().canonicalize().expect("repo");
    std::fs::remove_file(repo.join("push.toml")).expect("remove");
    let output = fleet.push_in(&repo.join("hosts"), &["status"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no push.toml in . or its parents (searched {}, {}; the search stops at the git repository's root)",
            repo.join("hosts").display(),
            repo.display()
        )),
        "{stderr}"
    );
}

#[test]
fn flake_hash_needs_a_host() {
    let fleet = unreachable_fleet();
    for flake in [".#", "repo#"] {
        let output = fleet.push(&["--flake", flake]);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("names no host after '#'"), "{stderr}");
    }
    // DIR#HOST from elsewhere selects HOST in DIR's push.toml.
    let output = fleet.push_in(fleet.dir.path(), &["status", "--flake", "repo/hosts#db-1"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(hosts_listed(&stdout), BTreeSet::from(["db-1".to_owned()]));
}
