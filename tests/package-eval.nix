# Reads back what the flake's packages declare, without nixpkgs (which the
# tests cannot fetch): a stand-in for the nixpkgs input of flake.nix.
# tests/tests/package_builds_from_its_source_set.rs evaluates it with
#   nix-instantiate --eval --strict --json tests/package-eval.nix \
#     --argstr flake "$PWD/flake.nix"
# and builds what it returns for each of `packages.<this system>`: the
# source set's root and paths (strings), the native inputs by nixpkgs name,
# the cargo build flags, `postInstall` and `meta.mainProgram`.
#
# Its `lib` has only what flake.nix's packages and nixos-module/package.nix
# use: `genAttrs`, `fileset.unions` and `fileset.toSource` (which, like
# nixpkgs', refuse a path that does not exist or lies outside the root),
# `importTOML`, `optional` and `optionalString` (as nixpkgs' lib defines
# them), `licenses.{mit,asl20}`, `platforms.linux`: anything else they ask
# of it fails this evaluation. `callPackage` passes `lib`, a `rustPlatform`
# whose `buildRustPackage` returns its arguments, a `stdenv` of a native
# build (nixpkgs' `buildPlatform.canExecute hostPlatform` is true when the
# two are the same machine; here they always are), and for every other
# argument without a default a nixpkgs package given as
# `{ nixpkgsInput = NAME; }`, which the test maps to what it provides here.
#
# What this does not check: nixpkgs' real `lib`, `stdenv` and
# `buildRustPackage` (its hooks, the `cargoLock` hashes, the release
# profile), `installShellFiles`' functions (the test runs `postInstall`
# with stand-ins of them), `meta` but its `mainProgram`, nor that the
# inputs' names are packages of nixpkgs. The flake's checks and VM test do.
{flake}: let
  system = builtins.currentSystem;
  existing = path:
    if builtins.pathExists path
    then toString path
    else throw "lib.fileset (stand-in): ${toString path} does not exist";
  lib = {
    genAttrs = names: f:
      builtins.listToAttrs (map (name: {
          inherit name;
          value = f name;
        })
        names);
    fileset = {
      unions = map existing;
      toSource = {
        root,
        fileset,
      }: let
        prefix = "${toString root}/";
        paths =
          if builtins.isList fileset
          then fileset
          else [(existing fileset)];
        inside = path:
          if builtins.substring 0 (builtins.stringLength prefix) path == prefix
          then path
          else throw "lib.fileset.toSource (stand-in): ${path} is not under ${toString root}";
      in {
        root = toString root;
        paths = map inside paths;
      };
    };
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    optional = condition: element:
      if condition
      then [element]
      else [];
    optionalString = condition: string:
      if condition
      then string
      else "";
    licenses = {
      mit = "MIT";
      asl20 = "Apache-2.0";
    };
    platforms.linux = ["x86_64-linux" "aarch64-linux"];
  };
  rustPlatform.buildRustPackage = attributes: attributes;
  stdenv = let
    platform = {inherit system;};
  in {
    buildPlatform = platform // {canExecute = other: other.system == system;};
    hostPlatform = platform;
  };

  # callPackage's rule: the caller's arguments first, then the package set's
  # for every formal argument without a default.
  callPackage = path: overrides: let
    function = import path;
    formal = builtins.functionArgs function;
    fromPackageSet = name:
      if name == "lib"
      then lib
      else if name == "rustPlatform"
      then rustPlatform
      else if name == "stdenv"
      then stdenv
      else {nixpkgsInput = name;};
    arguments = lib.genAttrs (builtins.filter (name: !formal.${name}) (builtins.attrNames formal)) fromPackageSet;
  in
    declared (function (arguments // overrides));

  nameOf = input: input.nixpkgsInput;
  declared = attributes: {
    inherit (attributes) src cargoBuildFlags;
    inherit (attributes.meta) mainProgram;
    postInstall = attributes.postInstall or "";
    nativeBuildInputs = map nameOf (attributes.nativeBuildInputs or []);
    buildInputs = map nameOf (attributes.buildInputs or []);
  };

  outputs = (import flake).outputs {
    self = throw "package-eval.nix: the flake's packages may not use `self`";
    nixpkgs = {
      inherit lib;
      legacyPackages.${system} = {inherit callPackage;};
    };
  };
in
  outputs.packages.${system}
