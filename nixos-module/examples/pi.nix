# A Raspberry Pi that never builds: one cache, a CI key that may only deploy,
# the operators' key from agenix, reads signed.
{
  networking.hostName = "pi";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    settings = {
      read_requires_signature = true;
      trusted_keys = [
        {key_file = "/run/agenix/ops-1.public";}
        {
          key = "ci-1:ZZEGWciplkkZ2GF3muAu/F7s+hW5mKdSYh4dFFstEBc=";
          may = ["deploy" "read"];
        }
      ];
      nix = {
        substituters = ["http://kelyus:5000"];
        trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
      };
      activation.switch_timeout_s = 1800;
    };
  };
}
