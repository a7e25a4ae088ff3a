# A builder that accepts only certificates issued for it (principal
# `deployer@ankarana`) and, for deploys when the CA is out of reach, the
# operators' security key from agenix.
{
  networking.hostName = "ankarana";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    settings = {
      trusted_keys = [
        {
          ssh_ca = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA/GeuAVmLaOJHJHVZhOVP6qI0WgLxOPZ371l2vTxSAL fleet-ca";
          principals = ["deployer@ankarana"];
          may = ["deploy" "rollback" "read"];
        }
        {ssh_file = "/run/agenix/ops-fido.pub";}
      ];
      nix = {
        substituters = ["http://kelyus:5000" "http://isalo:5000"];
        trusted_public_keys = [
          "kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="
          "isalo-1:LhsjMynWERYAabCTo4nIiN/K4AGToXPPXZen46ErizM="
        ];
      };
    };
  };
}
