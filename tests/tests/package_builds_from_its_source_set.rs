//! The flake's packages build as nixpkgs' `buildRustPackage` builds them,
//! from what `nixos-module/package.nix` declares and nothing else: its
//! source set (the git-tracked files under its paths), the crates of
//! `Cargo.lock` vendored, offline, seeing only its declared native inputs.
//! And the harness can fail: without one member the workspace does not
//! load, without `openssl` declared openssl-sys does not build.
//!
//! Real Nix reads the package (through `tests/package-eval.nix`, a stand-in
//! for nixpkgs, whose header says what it cannot check); real cargo builds.

mod package;

use std::process::Command;
use std::time::{Duration, Instant};

use package::declared::{flake_packages, Build};
use package::sandbox::Sandbox;
use package::source::{cargo, BuildTop};
use package::{require_root_and_nix, tail, workspace};

/// How long the whole build may take (a few minutes on two cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long building openssl-sys alone may take.
const CRATE_TIMEOUT: Duration = Duration::from_secs(600);

/// The flake's packages, read with Nix, as one build.
fn declared_build() -> Build {
    require_root_and_nix();
    let packages = flake_packages(&workspace()).expect("the flake's packages evaluate");
    Build::of(&packages).expect("one build of every package")
}

/// A build directory with `build`'s source set copied and its crates vendored.
fn prepared(build: &Build) -> BuildTop {
    let top = BuildTop::new().expect("build directory");
    let copied = top.copy(&build.source).expect("copying the source set");
    assert!(copied > 10, "only {copied} files in the source set");
    top.vendor().expect("vendoring Cargo.lock's crates");
    top
}

#[test]
fn the_packages_build_from_their_source_set_with_only_their_declared_inputs() {
    let build = declared_build();
    let started = Instant::now();
    let top = prepared(&build);
    let sandbox = Sandbox::new(&build.inputs).expect("a sandbox of the declared inputs");
    let mut args = vec!["build", "--offline", "--locked"];
    args.extend(build.cargo_flags.iter().map(String::as_str));
    let output = sandbox
        .cargo(&top, &args, BUILD_TIMEOUT)
        .expect("running cargo in the sandbox");
    assert!(
        output.status.success(),
        "cargo {} failed with only {:?} declared:\n{}\n...\n{}",
        args.join(" "),
        build.inputs,
        error_lines(&output.stderr),
        tail(&output.stderr, 4000)
    );
    eprintln!(
        "built {:?} from the source set in {:?}",
        build.programs,
        started.elapsed()
    );

    // Both programs linked, and run.
    for program in &build.programs {
        let binary = top.source().join("target/debug").join(program);
        let run = Command::new(&binary)
            .arg("--help")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
        assert!(
            run.status.success(),
            "{program} --help: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }

    run_post_install(&build, &top);

    // The sandbox hid what was not declared: libz-sys found no zlib and
    // built its own, as it does in Nix's sandbox.
    assert!(
        sandbox.hidden().iter().any(|file| file.ends_with("zlib.h")),
        "zlib.h was not hidden: {:?}",
        sandbox.hidden()
    );
    let bundled_zlib = std::fs::read_dir(top.source().join("target/debug/build"))
        .expect("build scripts' output")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("libz-sys-"))
        .any(|entry| entry.path().join("out/lib/libz.a").exists());
    assert!(bundled_zlib, "libz-sys did not build its own zlib");
}

/// Stand-ins for the functions of nixpkgs' `installShellFiles` that
/// `postInstall` calls: `installShellCompletion --cmd NAME --bash FILE ...`
/// and `installManPage PAGE...`, each copying what it is given under `$out`
/// (as the real ones do, into share/ directories of their own).
const INSTALL_SHELL_FILES: &str = r#"
installShellCompletion() {
  local cmd=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --cmd) cmd=$2; shift 2 ;;
      --bash|--fish|--zsh)
        mkdir -p "$out/completions/${1#--}"
        cat "$2" > "$out/completions/${1#--}/$cmd"
        shift 2 ;;
      *) echo "installShellCompletion (stand-in): unexpected $1" >&2; return 1 ;;
    esac
  done
}
installManPage() {
  mkdir -p "$out/share/man/man1"
  cp "$@" "$out/share/man/man1/"
}
set -euo pipefail
"#;

/// Runs push's `postInstall` with the program just built as `$out/bin/push`:
/// it installs push's completions for bash, fish and zsh and its manual pages.
fn run_post_install(build: &Build, top: &BuildTop) {
    let script = build
        .post_install
        .get("push")
        .expect("push's package has a postInstall");
    let out = top.path().join("out");
    std::fs::create_dir_all(out.join("bin")).expect("$out/bin");
    std::os::unix::fs::symlink(top.source().join("target/debug/push"), out.join("bin/push"))
        .expect("$out/bin/push");
    let work = top.path().join("post-install");
    std::fs::create_dir_all(&work).expect("a work directory");
    let ran = Command::new("bash")
        .arg("-c")
        .arg(format!("{INSTALL_SHELL_FILES}{script}"))
        .env("out", &out)
        .current_dir(&work)
        .output()
        .expect("bash");
    assert!(
        ran.status.success(),
        "postInstall failed:\n{script}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    for shell in ["bash", "fish", "zsh"] {
        let completions = std::fs::read_to_string(out.join("completions").join(shell).join("push"))
            .unwrap_or_else(|e| panic!("no {shell} completions: {e}"));
        assert!(completions.contains("rollback"), "{shell}: {completions}");
    }
    for page in ["push.1", "push-status.1", "push-log.1"] {
        let path = out.join("share/man/man1").join(page);
        assert!(path.exists(), "{page} was not installed");
    }
}

#[test]
fn every_file_the_source_set_compiles_in_is_in_it() {
    let build = declared_build();
    let top = BuildTop::new().expect("build directory");
    top.copy(&build.source).expect("copying the source set");
    let mut includes = 0;
    let mut missing = Vec::new();
    for file in rust_files(&top.source()) {
        let text = std::fs::read_to_string(&file).expect("a Rust file");
        for included in included_paths(&text) {
            includes += 1;
            let path = file.parent().expect("a directory").join(&included);
            if !path.exists() {
                missing.push(format!("{} includes {included}", file.display()));
            }
        }
    }
    assert!(
        includes > 5,
        "only {includes} include_str!/include_bytes! found"
    );
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "files compiled in but not in the source set"
    );
}

#[test]
fn a_source_set_without_one_member_fails_to_load() {
    let build = declared_build();
    let load = |top: &BuildTop| {
        Command::new(cargo())
            .current_dir(top.source())
            .args([
                "metadata",
                "--offline",
                "--no-deps",
                "--format-version",
                "1",
            ])
            .output()
            .expect("cargo metadata")
    };
    let whole = BuildTop::new().expect("build directory");
    whole.copy(&build.source).expect("copying the source set");
    let output = load(&whole);
    assert!(output.status.success(), "{}", tail(&output.stderr, 2000));

    let members: Vec<_> = build
        .source
        .paths
        .iter()
        .filter(|path| path.join("Cargo.toml").exists())
        .collect();
    assert!(members.len() >= 6, "members: {members:?}");
    for member in members {
        let top = BuildTop::new().expect("build directory");
        top.copy(&build.source.without(member))
            .expect("copying the source set");
        let output = load(&top);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "loaded without {}",
            member.display()
        );
        assert!(
            stderr.contains("failed to load manifest for workspace member"),
            "without {}: {stderr}",
            member.display()
        );
    }
}

#[test]
fn openssl_sys_fails_to_build_when_openssl_is_not_declared() {
    let build = declared_build();
    assert!(build.inputs.contains("openssl"), "{:?}", build.inputs);
    let mut inputs = build.inputs.clone();
    inputs.remove("openssl");
    let top = prepared(&build);
    let sandbox = Sandbox::new(&inputs).expect("a sandbox without openssl");
    let output = sandbox
        .cargo(
            &top,
            &["build", "--offline", "--locked", "--package", "openssl-sys"],
            CRATE_TIMEOUT,
        )
        .expect("running cargo in the sandbox");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "openssl-sys built without openssl"
    );
    assert!(
        stderr.contains("Could not find openssl via pkg-config"),
        "{}",
        tail(&output.stderr, 4000)
    );
    assert!(
        stderr.contains("Could not find directory of OpenSSL installation"),
        "{}",
        tail(&output.stderr, 4000)
    );
}

/// cargo's `error:` lines in `stderr`.
fn error_lines(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| line.starts_with("error"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files
}

/// The literal paths that `include_str!` and `include_bytes!` name in `text`.
fn included_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for macro_name in ["include_str!(\"", "include_bytes!(\""] {
        for (start, _) in text.match_indices(macro_name) {
            let rest = &text[start + macro_name.len()..];
            if let Some(end) = rest.find('"') {
                paths.push(rest[..end].to_owned());
            }
        }
    }
    paths
}
