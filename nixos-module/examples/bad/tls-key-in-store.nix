# expect: services.deployd: tls.key_file = /nix/store/00000000000000000000000000000000-deployd-tls.key is in the Nix store
{
  networking.hostName = "sambirano";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
    settings = {
      tls = {
        cert_file = "/var/lib/deployd-tls/cert.pem";
        key_file = "/nix/store/00000000000000000000000000000000-deployd-tls.key";
      };
      nix = {
        substituters = ["http://kelyus:5000"];
        trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
      };
    };
  };
}
