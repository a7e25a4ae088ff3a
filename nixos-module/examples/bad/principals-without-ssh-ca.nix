# expect: trusted key 2 sets `principals`, which only an `ssh_ca` entry takes
{
  networking.hostName = "misread";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
    settings = {
      trusted_keys = [
        {
          ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILkyr5DXwzq2VGuNi1nv8begVccuVaOkSWDGTGWc4Y1O alice@kelyus";
          principals = ["deployer"];
        }
      ];
      nix = {
        substituters = ["http://kelyus:5000"];
        trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
      };
    };
  };
}
