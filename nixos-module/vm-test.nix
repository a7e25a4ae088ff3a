# The VM test users with Nix and nixpkgs run through `nix flake check`: a
# `cache` (harmonia, signing), a `target` running the module and trusting
# only the cache's key, and a `deployer` running `push` and the forge
# service (`services.deployd.forge`).
#
# The systems the target is sent are its own configuration with one change
# each (`next`: one more file in /etc; `failing`: an activation script that
# fails; `reconfigured`: deployd's config trusts one more key), made as
# NixOS makes specialisations (extendModules) but not part of the target's
# system: the target boots without them, and fetches each from the cache,
# which has them in its closure. The deployer's flake names them by
# derivation; push finds every output in the cache (nothing is built in the
# VMs, which have no network), signs each deploy and follows it.
#
# As nixpkgs' own switch tests (nixos/tests/switch-test.nix), the target
# has no boot loader (a `switch` would otherwise install GRUB on the VM's
# unpartitioned disk) and switching enabled, which test nodes leave off
# unless they have specialisations (nixos/lib/testing/nixos-test-base.nix).
{
  self,
  pkgs,
}: let
  inherit (pkgs) lib;
  push = self.packages.${pkgs.stdenv.hostPlatform.system}.push;
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
  toplevelOf = nodes: name: nodes.target.system.build.deploydTestSystems.${name};
  sentSystems = ["next" "failing" "reconfigured"];
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
      # What the cache serves: the systems the target is sent, with their
      # whole closures.
      system.extraDependencies = map (toplevelOf nodes) sentSystems;
    };
    target = {extendModules, ...}: {
      imports = [self.nixosModules.default];
      system.switch.enable = true;
      boot.loader.grub.enable = false;
      nix.settings = {
        substituters = lib.mkForce ["http://cache:5000"];
        trusted-public-keys = lib.mkForce [cachePublic];
      };
      services.deployd = {
        enable = true;
        openFirewall = true;
        trustedKeys = [(lib.fileContents "${keys}/ops-1.public")];
      };
      # The systems it is sent: this machine's configuration and one change,
      # evaluated as nixos/modules/system/activation/specialisation.nix
      # evaluates a specialisation, but nothing of this system refers to
      # them, so the target's store does not have them (a test node's store
      # holds its system's closure alone: qemu-vm.nix's regInfo of
      # virtualisation.additionalPaths).
      system.build.deploydTestSystems = lib.mapAttrs (_: change: (extendModules {modules = [change];}).config.system.build.toplevel) {
        next.environment.etc."deployd-test".text = "next";
        failing.system.activationScripts.failOnPurpose = "exit 1";
        # deployd's config alone changes: the switch reloads deployd.
        reconfigured.services.deployd.trustedKeys = [(lib.fileContents "${keys}/stranger-1.public")];
      };
    };
    deployer = {nodes, ...}: {
      imports = [self.nixosModules.default];
      environment.systemPackages = [push pkgs.git pkgs.curl];
      environment.etc = {
        "deployd-forge/ci-1.secret" = forgeSecret "${keys}/ci-1.secret";
        "deployd-forge/webhook-secret" = forgeSecret (pkgs.writeText "webhook-secret" "not-the-secret");
        "deployd-forge/forge-token" = forgeSecret (pkgs.writeText "forge-token" "token");
      };
      # It starts, runs as its own user (its build user can switch users and
      # read none of the secrets) and refuses a hook that is not signed with
      # its secret; it fetches the repository only for a push it acts on.
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
      system.extraDependencies = map (name: (toplevelOf nodes name).drvPath) sentSystems;
      nix.settings = {
        substituters = lib.mkForce ["http://cache:5000"];
        trusted-public-keys = lib.mkForce [cachePublic];
        experimental-features = ["nix-command" "flakes"];
      };
    };
  };
  testScript = {nodes, ...}: let
    next = toplevelOf nodes "next";
    reconfigured = toplevelOf nodes "reconfigured";
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
    # Its build user (setpriv, with the unit's two capabilities) runs, and
    # can read none of its secret files.
    deployer.wait_until_succeeds(
        "journalctl -u deployd-forge.service -o cat | grep -F"
        + " 'evaluated and built as deployd-forge-build:deployd-forge, who can read none of the secret files'"
    )
    code = deployer.succeed(
        "curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-Forgejo-Event: push'"
        + " -H 'X-Forgejo-Signature: 00' -d '{}' http://127.0.0.1:9798/v1/hooks/forgejo"
    )
    assert code == "401", code

    # The target has none of the systems it is sent: each comes from the cache.
    for system in [${lib.concatMapStringsSep ", " (name: "\"${toplevelOf nodes name}\"") sentSystems}]:
        target.fail(f"nix-store --check-validity {system}")

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

    def push_signed_by(key):
        deployer.succeed(f"sed -i 's|key_file = .*|key_file = \"${keys}/{key}.secret\"|' /root/fleet/push.toml")

    # The target fetches the new system from the cache and ends on it.
    commit("${fleetFlake next}")
    deployer.succeed("cd /root/fleet && push --all")
    target.succeed("nix-store --check-validity ${next}")
    target.succeed("test \"$(readlink -f /run/current-system)\" = ${next}")
    target.succeed("test \"$(cat /etc/deployd-test)\" = next")

    # A request signed by a key the target does not trust is refused.
    push_signed_by("stranger-1")
    out = deployer.fail("cd /root/fleet && push --all 2>&1")
    assert "unknown_key" in out, out
    push_signed_by("ops-1")

    # A failing switch rolls back to the previous system.
    commit("${fleetFlake (toplevelOf nodes "failing")}")
    out = deployer.fail("cd /root/fleet && push --all")
    assert "rolled_back" in out, out
    target.succeed("test \"$(readlink -f /run/current-system)\" = ${next}")
    out = deployer.succeed("cd /root/fleet && push status")
    assert "rolled_back" in out, out

    # A system whose only change is deployd's config: the switch reloads
    # deployd (the same process goes on), which then trusts the new key.
    pid = target.succeed("systemctl show -P MainPID deployd.service").strip()
    commit("${fleetFlake reconfigured}")
    deployer.succeed("cd /root/fleet && push --all")
    target.succeed("test \"$(readlink -f /run/current-system)\" = ${reconfigured}")
    out = deployer.succeed("cd /root/fleet && push log --host target")
    assert "reloading the following units: deployd.service" in out, out
    now = target.succeed("systemctl show -P MainPID deployd.service").strip()
    assert now == pid, f"deployd was restarted ({pid} then {now}), not reloaded"
    push_signed_by("stranger-1")
    deployer.succeed("cd /root/fleet && push --all")
    push_signed_by("ops-1")
  '';
}
