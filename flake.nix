{
  description = "deployd: pull-based, signed deploys for fleets of NixOS machines";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = {
    self,
    nixpkgs,
  }: let
    inherit (nixpkgs) lib;
    # The user's fleet has x86_64 machines and a Raspberry Pi.
    systems = ["x86_64-linux" "aarch64-linux"];
    forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
  in {
    packages = forAllSystems (pkgs: rec {
      deployd = pkgs.callPackage ./nixos-module/package.nix {crate = "deployd";};
      push = pkgs.callPackage ./nixos-module/package.nix {crate = "deployd-push";};
      default = deployd;
    });

    # The module, bringing its own package.
    nixosModules.default = {
      lib,
      pkgs,
      ...
    }: {
      imports = [./nixos-module];
      services.deployd.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.deployd;
    };

    checks = forAllSystems (pkgs: let
      package = self.packages.${pkgs.system}.deployd;
      cargoCheck = name: command:
        package.overrideAttrs (old: {
          name = "deployd-${name}";
          nativeBuildInputs = old.nativeBuildInputs ++ [pkgs.clippy pkgs.rustfmt];
          buildPhase = ''
            runHook preBuild
            ${command}
            runHook postBuild
          '';
          installPhase = "touch $out";
          doCheck = false;
        });
    in {
      clippy = cargoCheck "clippy" "cargo clippy --workspace --all-targets --offline -- -D warnings";
      # Unit, property and router tests; the lab tests need root and namespaces.
      tests = cargoCheck "tests" ''
        cargo test --offline -p deployd-protocol
        cargo test --offline -p deployd --lib --test api --test check_config
      '';
      formatting = cargoCheck "formatting" "cargo fmt --all --check";
      nix-formatting = pkgs.runCommand "deployd-nix-formatting" {nativeBuildInputs = [pkgs.alejandra];} ''
        alejandra --check ${./.}
        touch $out
      '';
      vm = pkgs.testers.runNixOSTest (import ./nixos-module/vm-test.nix {
        inherit self pkgs;
      });
    });

    devShells = forAllSystems (pkgs: {
      default = pkgs.mkShell {
        inputsFrom = [self.packages.${pkgs.system}.deployd];
        packages = [pkgs.cargo pkgs.clippy pkgs.rustfmt pkgs.rust-analyzer pkgs.nix pkgs.alejandra];
      };
    });

    formatter = forAllSystems (pkgs: pkgs.alejandra);
  };
}
