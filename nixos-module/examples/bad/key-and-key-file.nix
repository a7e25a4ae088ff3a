# expect: needs exactly one of `key`, `key_file`, `ssh`, `ssh_file` and `ssh_ca`
{
  networking.hostName = "doubled";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    settings = {
      trusted_keys = [
        {
          key = "ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI=";
          key_file = "/run/agenix/ops-1.public";
        }
      ];
      nix = {
        substituters = ["http://kelyus:5000"];
        trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
      };
    };
  };
}
