# expect: deployd has no cache of your own to fetch systems from (only cache.nixos.org, which never has your hosts' systems), so every deploy would end `fetch_failed`. Name your builders' cache and its key, for the host's Nix and deployd alike: nix.settings.extra-substituters
{
  networking.hostName = "cacheless";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
  };
}
