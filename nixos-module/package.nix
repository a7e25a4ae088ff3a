# deployd's packages, built from the workspace with its committed Cargo.lock.
# `crate` picks the binary: "deployd" (the daemon) or "deployd-push" (push).
{
  lib,
  rustPlatform,
  pkg-config,
  crate ? "deployd",
}: let
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../clippy.toml
      ../protocol
      ../daemon
      ../push
      ../tests
    ];
  };
  workspace = lib.importTOML ../Cargo.toml;
in
  rustPlatform.buildRustPackage {
    pname = crate;
    inherit (workspace.workspace.package) version;
    inherit src;
    cargoLock.lockFile = ../Cargo.lock;
    cargoBuildFlags = ["--package" crate];
    # libgit2 is vendored by git2 and built with cc.
    nativeBuildInputs = [pkg-config];
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
