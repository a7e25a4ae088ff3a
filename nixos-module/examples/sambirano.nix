# A host: trusts the operators' key, fetches from the three builders' caches
# (and cache.nixos.org, which NixOS adds to every host's substituters).
{
  networking.hostName = "sambirano";
  nix.settings = {
    substituters = ["http://kelyus:5000" "http://ankarana:5000" "http://isalo:5000"];
    trusted-public-keys = [
      "kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="
      "ankarana-1:HZJusoJfZha8/ZOSpAqf1dwiBsiuqMNR8ua0I2bO5os="
      "isalo-1:LhsjMynWERYAabCTo4nIiN/K4AGToXPPXZen46ErizM="
    ];
  };
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    openFirewall = true;
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
    settings.health.http = ["http://127.0.0.1:8080/health"];
  };
}
