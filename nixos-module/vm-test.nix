# The VM test users with Nix and nixpkgs run through `nix flake check`: a
# `cache` (harmonia, signing), a `target` running the module and trusting
# only the cache's key, and a `deployer` running `push` and the forge
# service (`services.deployd.forge`).
#
# The target's next systems are its specialisations `next` (one more file in
# /etc) and `failing` (an activation script that fails): full systems of the
# same machine, so switching to them keeps the VM working. The deployer's
# flake names them by derivation; push finds every output in the cache
# (nothing is built in the VMs, which have no network), signs each deploy
# and follows it.
{
  self,
  pkgs,
}: let
  inherit (pkgs) lib;
  push = self.packages.${pkgs.system}.push;
  keys = pkgs.runCommand "deployd-test-keys" {nativeBuildInputs = [pkgs.nix push];} ''
    mkdir $out
    nix-store --generate-binary-cache-key cache-1 $out/cache.secret $out/cache.public
    push keygen ops-1 --out $out
    push keygen stranger-1 --out $out
    push keygen ci-1 --out $out
  '';
  # The forge service's secrets: files outside the store, readable by its user.
  forgeSecret = source: {
    inherit source;
    mode = "0400";
    user = "deployd-forge";
  };
  cachePublic = lib.fileContents "${keys}/cache.public";
  toplevelOf = nodes: name: nodes.target.specialisation.${name}.configuration.system.build.toplevel;
  # A flake whose `target` is the given system (by derivation and output).
  fleetFlake = system:
    pkgs.writeText "flake.nix" ''
      {
        outputs = { self }: {
          nixosConfigurations.target.config.system.build.toplevel = {
            type = "derivation";
            drvPath = "${builtins.unsafeDiscardOutputDependency system.drvPath}";
            outPath = "${builtins.unsafeDiscardStringContext system.outPath}";
          };
        };
      }
    '';
in {
  name = "deployd";
  nodes = {
    cache = {nodes, ...}: {
      services.harmonia = {
        enable = true;
        signKeyPaths = ["${keys}/cache.secret"];
        settings.bind = "[::]:5000";
      };
      networking.firewall.allowedTCPPorts = [5000];
      system.extraDependencies = [nodes.target.system.build.toplevel];
    };
    target = {
      imports = [self.nixosModules.default];
      system.switch.enable = true;
      nix.settings = {
        substituters = lib.mkForce ["http://cache:5000"];
        trusted-public-keys = lib.mkForce [cachePublic];
      };
      services.deployd = {
        enable = true;
        openFirewall = true;
        trustedKeys = [(lib.fileContents "${keys}/ops-1.public")];
      };
      specialisation.next.configuration.environment.etc."deployd-test".text = "next";
      specialisation.failing.configuration.system.activationScripts.failOnPurpose = "exit 1";
    };
    deployer = {nodes, ...}: {
      imports = [self.nixosModules.default];
      environment.systemPackages = [push pkgs.git pkgs.curl];
      environment.etc = {
        "deployd-forge/ci-1.secret" = forgeSecret "${keys}/ci-1.secret";
        "deployd-forge/webhook-secret" = forgeSecret (pkgs.writeText "webhook-secret" "not-the-secret");
        "deployd-forge/forge-token" = forgeSecret (pkgs.writeText "forge-token" "token");
      };
      # It starts, runs as its own user and refuses a hook that is not signed
      # with its secret; it fetches the repository only for a push it acts on.
      services.deployd.forge = {
        enable = true;
        settings = {
          repository = "file:///srv/fleet.git";
          key_file = "/etc/deployd-forge/ci-1.secret";
          forge = {
            kind = "forgejo";
            api_url = "http://127.0.0.1:3000";
            repository = "ops/fleet";
            secret_file = "/etc/deployd-forge/webhook-secret";
            token_file = "/etc/deployd-forge/forge-token";
          };
          follow = [{branch = "main";}];
        };
      };
      # The derivations the flake names must be valid here, to be realised.
      system.extraDependencies = map (name: (toplevelOf nodes name).drvPath) ["next" "failing"];
      nix.settings = {
        substituters = lib.mkForce ["http://cache:5000"];
        trusted-public-keys = lib.mkForce [cachePublic];
        experimental-features = ["nix-command" "flakes"];
      };
    };
  };
  testScript = {nodes, ...}: let
    next = toplevelOf nodes "next";
  in ''
    start_all()
    cache.wait_for_unit("harmonia.service")
    target.wait_for_unit("deployd.service")
    target.wait_for_open_port(9797)

    deployer.wait_for_unit("deployd-forge.service")
    deployer.wait_for_open_port(9798)
    deployer.succeed("curl -sf http://127.0.0.1:9798/healthz")
    user = deployer.succeed("systemctl show -P User deployd-forge.service").strip()
    assert user == "deployd-forge", user
    code = deployer.succeed(
        "curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-Forgejo-Event: push'"
        + " -H 'X-Forgejo-Signature: 00' -d '{}' http://127.0.0.1:9798/v1/hooks/forgejo"
    )
    assert code == "401", code

    deployer.succeed(
        "mkdir -p /root/fleet",
        "printf '[defaults]\\nkey_file = \"${keys}/ops-1.secret\"\\n[hosts.target]\\n' > /root/fleet/push.toml",
    )

    def commit(flake):
        deployer.succeed(
            f"cp {flake} /root/fleet/flake.nix",
            "cd /root/fleet && (test -d .git || git init -q) && git add flake.nix"
            + " && git -c user.name=t -c user.email=t@t commit -qm next",
        )

    # The target ends on the new system.
    commit("${fleetFlake next}")
    deployer.succeed("cd /root/fleet && push --all")
    target.succeed("test \"$(readlink -f /run/current-system)\" = ${next}")
    target.succeed("test \"$(cat /etc/deployd-test)\" = next")

    # A request signed by a key the target does not trust is refused.
    deployer.succeed("sed -i 's|ops-1.secret|stranger-1.secret|' /root/fleet/push.toml")
    out = deployer.fail("cd /root/fleet && push --all 2>&1")
    assert "unknown_key" in out, out
    deployer.succeed("sed -i 's|stranger-1.secret|ops-1.secret|' /root/fleet/push.toml")

    # A failing switch rolls back to the previous system.
    commit("${fleetFlake (toplevelOf nodes "failing")}")
    out = deployer.fail("cd /root/fleet && push --all")
    assert "rolled_back" in out, out
    target.succeed("test \"$(readlink -f /run/current-system)\" = ${next}")
    out = deployer.succeed("cd /root/fleet && push status")
    assert "rolled_back" in out, out
  '';
}
