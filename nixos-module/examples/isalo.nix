# A builder whose operators sign with SSH: certificates from the fleet's CA
# (principals by default `deployer`, for every host, and `deployer@isalo`,
# for this one), and alice's security key, which may deploy and read only.
{
  networking.hostName = "isalo";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    settings = {
      trusted_keys = [
        {ssh_ca = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA/GeuAVmLaOJHJHVZhOVP6qI0WgLxOPZ371l2vTxSAL fleet-ca";}
        {
          ssh = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAID8qx7BRlL/EfynJA0DSPNy2AsUm09LI/sC4jX8ziPKmAAAABHNzaDo= alice@kelyus";
          may = ["deploy" "read"];
        }
      ];
      nix = {
        substituters = ["http://kelyus:5000"];
        trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
      };
    };
  };
}
