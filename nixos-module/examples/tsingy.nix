# The fleet's CI machine: a push to `main` on the forge deploys the hosts
# that trust its key `ci-1` (the Raspberry Pi), which the forge then shows on
# the commit. It builds on kelyus over SSH, by its own settings (a commit's
# push.toml chooses the hosts, not the build machine). Its secrets come from
# agenix, readable by the service's own user alone, so its build user (the
# module's `deployd-forge-build`, which evaluates the fleet's flake) cannot.
{lib, ...}: {
  networking.hostName = "tsingy";
  age.secrets = lib.genAttrs ["ci-1.secret" "ci-ssh-key" "git-token" "webhook-secret" "forge-token"] (name: {
    file = ./secrets + "/${name}.age";
    owner = "deployd-forge";
  });
  services.deployd.forge = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-push";
    openFirewall = true;
    settings = {
      repository = "https://git.example.org/ops/fleet.git";
      # Where the forge's users open the pages each commit status links to.
      public_url = "https://deploy.example.org";
      key_file = "/run/agenix/ci-1.secret";
      git = {
        username = "deployd";
        password_file = "/run/agenix/git-token";
      };
      forge = {
        kind = "forgejo";
        api_url = "https://git.example.org";
        repository = "ops/fleet";
        secret_file = "/run/agenix/webhook-secret";
        token_file = "/run/agenix/forge-token";
      };
      build.build_host = "root@kelyus";
      follow = [
        {
          branch = "main";
          hosts = ["pi"];
          confirm_s = 120;
        }
      ];
    };
  };
  # The key it builds on kelyus with (build.build_host), as Nix's own SSH
  # options; kelyus's host key belongs in programs.ssh.knownHosts.
  systemd.services.deployd-forge.environment.NIX_SSHOPTS = "-i /run/agenix/ci-ssh-key";
  # Deployed like every host.
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
    settings.nix = {
      substituters = ["http://kelyus:5000"];
      trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
    };
  };
}
