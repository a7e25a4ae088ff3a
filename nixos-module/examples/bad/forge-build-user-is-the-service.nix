# expect: settings.build.user is `deployd-forge`, who can read the service's secrets
{
  networking.hostName = "trusting";
  services.deployd.forge = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-push";
    settings = {
      repository = "https://git.example.org/ops/fleet.git";
      key_file = "/run/agenix/ci-1.secret";
      forge = {
        kind = "forgejo";
        api_url = "https://git.example.org";
        repository = "ops/fleet";
        secret_file = "/run/agenix/webhook-secret";
        token_file = "/run/agenix/forge-token";
      };
      build.user = "deployd-forge";
      follow = [{branch = "main";}];
    };
  };
}
