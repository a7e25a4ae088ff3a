# expect: settings.forge.token would put a secret in the config
{
  networking.hostName = "chatty";
  services.deployd.forge = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-push";
    settings = {
      repository = "https://git.example.org/ops/fleet.git";
      key_file = "/run/agenix/ci-1.secret";
      forge = {
        kind = "gitea";
        api_url = "https://git.example.org";
        repository = "ops/fleet";
        secret_file = "/run/agenix/webhook-secret";
        token_file = "/run/agenix/forge-token";
        token = "0123456789abcdef";
      };
      follow = [{branch = "main";}];
    };
  };
}
