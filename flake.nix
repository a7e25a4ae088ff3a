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

    # The module, bringing its own packages: deployd for the daemon, push
    # for the forge service.
    nixosModules.default = {
      lib,
      pkgs,
      ...
    }: {
      imports = [./nixos-module];
      services.deployd.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.deployd;
      services.deployd.forge.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.push;
    };

    checks = forAllSystems (pkgs: let
      package = self.packages.${pkgs.stdenv.hostPlatform.system}.deployd;
      cargoCheck = name: command:
        package.overrideAttrs (old: {
          name = "deployd-${name}";
          # util-linux: the switch lock's test holds an flock as another switch would.
          # openssl: the TLS tests make their CA and certificates with it.
          nativeBuildInputs = old.nativeBuildInputs ++ [pkgs.clippy pkgs.rustfmt pkgs.git pkgs.util-linux pkgs.openssl];
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
      # Every test that runs in the build sandbox: unit, property, router,
      # notify and state tests, and push's input checks. Left out, because the
      # sandbox has neither: push's Nix interop test (it needs a Nix store to
      # sign and verify in) and the lab tests (root, namespaces, a Nix store).
      tests = cargoCheck "tests" ''
        cargo test --offline -p deployd-protocol
        cargo test --offline -p deployd-command -p deployd-service
        cargo test --offline -p deployd --lib --test api --test check_config \
          --test sd_notify --test start_order --test stale_request \
          --test unreadable_state --test unwritable_record --test reload_on_sighup \
          --test serves_https
        cargo test --offline -p deployd-push --bins --test bad_input --test keygen --test serve_service
      '';
      formatting = cargoCheck "formatting" "cargo fmt --all --check";
      nix-formatting = pkgs.runCommand "deployd-nix-formatting" {nativeBuildInputs = [pkgs.alejandra];} ''
        alejandra --check ${./.}
        touch $out
      '';
      # The module evaluated with nixpkgs' own lib for every example host
      # (nixos-module/check-examples.sh): each config it renders passes the
      # built deployd's check-config (the forge's, push serve --check) and
      # equals its fixture, the unit reloads deployd on a new config, and
      # every bad example fails with its assertion's message. Evaluation
      # only, so it runs in the sandbox.
      module-examples =
        pkgs.runCommand "deployd-module-examples" {
          nativeBuildInputs = [pkgs.nix pkgs.python3];
        } ''
          export HOME=$TMPDIR
          bash ${./nixos-module}/check-examples.sh ${nixpkgs}/lib \
            ${package}/bin/deployd ${self.packages.${pkgs.stdenv.hostPlatform.system}.push}/bin/push
          touch $out
        '';
      vm = pkgs.testers.runNixOSTest (import ./nixos-module/vm-test.nix {
        inherit self pkgs;
      });
    });

    devShells = forAllSystems (pkgs: {
      default = pkgs.mkShell {
        inputsFrom = [self.packages.${pkgs.stdenv.hostPlatform.system}.deployd];
        packages = [pkgs.cargo pkgs.clippy pkgs.rustfmt pkgs.rust-analyzer pkgs.nix pkgs.alejandra];
      };
    });

    formatter = forAllSystems (pkgs: pkgs.alejandra);
  };
}
