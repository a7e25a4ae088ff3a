# expect: trusted key 1 needs exactly one of `key`, `key_file`, `ssh`, `ssh_file` and `ssh_ca`
{
  networking.hostName = "doubled";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    settings = {
      trusted_keys = [
        {
          key = "ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI=";
          ssh_ca = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA/GeuAVmLaOJHJHVZhOVP6qI0WgLxOPZ371l2vTxSAL fleet-ca";
        }
      ];
      nix = {
        substituters = ["http://kelyus:5000"];
        trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
      };
    };
  };
}
