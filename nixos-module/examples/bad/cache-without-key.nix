# expect: no key of your builders' caches (http://kelyus:5000) is trusted, so Nix would refuse every system they serve
{
  networking.hostName = "keyless";
  nix.settings.extra-substituters = ["http://kelyus:5000"];
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
  };
}
