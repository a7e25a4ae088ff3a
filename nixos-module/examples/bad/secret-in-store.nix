# expect: is in the Nix store, which every user can read
{
  networking.hostName = "leaky";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    settings = {
      trusted_keys = [{key_file = "/nix/store/00000000000000000000000000000000-ops-1.public";}];
      webhook_secret_file = "/nix/store/00000000000000000000000000000000-webhook-secret";
      nix = {
        substituters = ["http://kelyus:5000"];
        trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
      };
    };
  };
}
