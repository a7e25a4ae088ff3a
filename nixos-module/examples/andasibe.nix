# A host reached over HTTPS only: deployd serves the certificate that
# security.acme obtains for the host (by DNS challenge: deployd's port is not
# 80), renewals included, and after a switch checks the host's site over
# HTTPS, trusting the fleet's own CA besides the system's.
{
  networking.hostName = "andasibe";
  nix.settings = {
    extra-substituters = ["http://kelyus:5000"];
    extra-trusted-public-keys = ["kelyus-1:RFs2JUFuQ9I+0lGT8dLDXdcIQ6E93aAymjn7TU60Duk="];
  };
  security.acme = {
    acceptTerms = true;
    defaults.email = "ops@example.org";
    certs."andasibe.example.org" = {
      dnsProvider = "rfc2136";
      environmentFile = "/run/agenix/acme-dns";
    };
  };
  services.deployd = {
    enable = true;
    package = "/nix/store/00000000000000000000000000000000-deployd";
    openFirewall = true;
    trustedKeys = ["ops-1:hxOBrZ8jAcsWuXxbyqBrySuelZmwaGAgbFv0k2emhaI="];
    acmeCertificate = "andasibe.example.org";
    settings.health = {
      http = ["https://intranet.andasibe.example.org/health"];
      ca_file = "/etc/ssl/fleet-ca.pem";
    };
  };
}
