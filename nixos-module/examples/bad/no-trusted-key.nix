# expect: no deploy key is trusted
{
  networking.hostName = "lonely";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    settings.nix = {
      substituters = ["http://kelyus:5000"];
      trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
    };
  };
}
