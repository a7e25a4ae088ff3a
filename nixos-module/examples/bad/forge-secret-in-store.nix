# expect: services.deployd.forge: key_file = /nix/store/00000000000000000000000000000000-ci-1.secret is in the Nix store
{
  networking.hostName = "careless";
  services.deployd.forge = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-push";
    settings = {
      repository = "https://git.example.org/ops/fleet.git";
      key_file = "/nix/store/00000000000000000000000000000000-ci-1.secret";
      forge = {
        kind = "github";
        api_url = "https://api.github.com";
        repository = "ops/fleet";
        secret_file = "/run/agenix/webhook-secret";
        token_file = "/run/agenix/forge-token";
      };
      follow = [{branch = "main";}];
    };
  };
}
