# A builder: builds for the fleet (also for the others, through distributed
# builds), serves its store as the fleet's binary cache, signed with its key.
{
  networking.hostName = "kelyus";
  services.harmonia = {
    enable = true;
    signKeyPaths = ["/run/agenix/kelyus-1.secret"];
    settings.bind = "[::]:5000";
  };
  networking.firewall.allowedTCPPorts = [5000];
  nix = {
    distributedBuilds = true;
    buildMachines = [
      {
        hostName = "ankarana";
        systems = ["x86_64-linux" "aarch64-linux"];
        maxJobs = 8;
        supportedFeatures = ["big-parallel" "kvm"];
      }
      {
        hostName = "isalo";
        systems = ["x86_64-linux"];
        maxJobs = 4;
      }
    ];
    settings.trusted-public-keys = [
      "ankarana-1:HZJusoJfZha8/ZOSpAqf1dwiBsiuqMNR8ua0I2bO5os="
      "isalo-1:LhsjMynWERYAabCTo4nIiN/K4AGToXPPXZen46ErizM="
    ];
  };
  # The builders are deployed like every host.
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
    settings.nix = {
      substituters = ["http://kelyus:5000" "http://ankarana:5000" "http://isalo:5000"];
      trusted_public_keys = [
        "kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="
        "ankarana-1:HZJusoJfZha8/ZOSpAqf1dwiBsiuqMNR8ua0I2bO5os="
        "isalo-1:LhsjMynWERYAabCTo4nIiN/K4AGToXPPXZen46ErizM="
      ];
    };
  };
}
