# A host set up the common way: its builder's cache and key in the host's own
# `extra-substituters` and `extra-trusted-public-keys`, which its Nix and
# deployd both pull from (with cache.nixos.org, which NixOS lists first).
{
  networking.hostName = "masoala";
  nix.settings = {
    extra-substituters = ["http://kelyus:5000"];
    extra-trusted-public-keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
  };
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
  };
}
