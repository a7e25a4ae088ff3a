# The lab's fleet: one toy NixOS system per host, described by settings.nix.
# A flake without inputs, so it evaluates and builds offline.
{
  description = "deployd lab fleet of toy NixOS systems";

  outputs = {self}: let
    settings = import ./settings.nix;
    toySystem = import ./toy-system.nix;
    configuration = host: let
      system = toySystem {inherit host settings;};
    in {
      config.system.build.toplevel = system.toplevel;
      config.services.deployd = system.deployd;
    };
  in {
    nixosConfigurations = builtins.listToAttrs (
      map (host: {
        name = host;
        value = configuration host;
      })
      settings.hosts
    );
  };
}
