# deployd's packages, built from the workspace with its committed Cargo.lock.
# `crate` picks the binary: "deployd" (the daemon) or "deployd-push" (push).
# tests/tests/package_builds_from_its_source_set.rs builds this source set as
# this file declares it, with only the native inputs declared here.
{
  lib,
  stdenv,
  rustPlatform,
  pkg-config,
  openssl,
  installShellFiles,
  crate ? "deployd",
}: let
  isPush = crate == "deployd-push";
  workspace = lib.importTOML ../Cargo.toml;
  # What cargo reads: the workspace's manifest, lock and lint settings, every
  # member as Cargo.toml lists them (so a new member is never left out), and
  # the one file outside the members that a member compiles in: the lab's
  # `include_str!` of the module's unit settings (the flake's checks build
  # the whole workspace from this source). No member has a build script, and
  # there is no `.cargo/` config.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions (
      [
        ../Cargo.toml
        ../Cargo.lock
        ../clippy.toml
        ./deployd-unit.json
      ]
      ++ map (member: ../. + "/${member}") workspace.workspace.members
    );
  };
in
  rustPlatform.buildRustPackage {
    pname = crate;
    inherit (workspace.workspace.package) version;
    inherit src;
    cargoLock.lockFile = ../Cargo.lock;
    cargoBuildFlags = ["--package" crate];
    # push's git2 (features `https` and `ssh`) links OpenSSL through
    # openssl-sys, which finds it with pkg-config only (Cargo.lock has no
    # openssl-src: it is never built from source). The other C libraries
    # need no input: git2's `vendored-libgit2` builds libgit2 with cc;
    # libssh2-sys always builds its bundled libssh2 (a system one only when
    # LIBSSH2_SYS_USE_PKG_CONFIG is set); libz-sys builds its bundled zlib
    # when neither pkg-config nor the C compiler finds one, as in the sandbox.
    nativeBuildInputs = [pkg-config] ++ lib.optional isPush installShellFiles;
    buildInputs = [openssl];
    # push's shell completions and manual pages (push.1, push-status.1, ...)
    # come from push itself (clap_complete, clap_mangen), so only where the
    # program built can run here (not in a cross build).
    postInstall = lib.optionalString (isPush && stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
      installShellCompletion --cmd push \
        --bash <($out/bin/push completions bash) \
        --fish <($out/bin/push completions fish) \
        --zsh <($out/bin/push completions zsh)
      $out/bin/push man --out man
      installManPage man/*.1
    '';
    # The unit tests run in the flake's checks; the end-to-end tests need
    # root and network namespaces, which builds do not have.
    doCheck = false;
    meta = {
      description = "deployd: pull-based, signed deploys for fleets of NixOS machines";
      license = with lib.licenses; [mit asl20];
      platforms = lib.platforms.linux;
      mainProgram =
        if crate == "deployd-push"
        then "push"
        else "deployd";
    };
  }
