# expect: names no certificate of security.acme.certs (there are none)
{
  networking.hostName = "sambirano";
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
    acmeCertificate = "sambirano.example.org";
    settings.nix = {
      substituters = ["http://kelyus:5000"];
      trusted_public_keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
    };
  };
}
