# expect: settings.follow is empty, so no push would ever deploy
{
  networking.hostName = "idle";
  services.deployd.forge = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-push";
    settings = {
      repository = "https://git.example.org/ops/fleet.git";
      key_file = "/run/agenix/ci-1.secret";
      forge = {
        kind = "gitlab";
        api_url = "https://gitlab.example.org";
        repository = "ops/fleet";
        secret_file = "/run/agenix/webhook-secret";
        token_file = "/run/agenix/forge-token";
      };
    };
  };
}
