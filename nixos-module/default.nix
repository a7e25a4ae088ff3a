# deployd's NixOS module: `services.deployd`.
#
#   imports = [ deployd.nixosModules.default ];
#   services.deployd.enable = true;
#   services.deployd.trustedKeys = [ "ops-1:BASE64PUBLIC=" ];
#
# The settings are rendered to deployd's TOML config and checked with
# `deployd check-config` at build time, so a bad config fails the build, not
# the host.
{
  config,
  lib,
  pkgs,
  ...
}: let
  cfg = config.services.deployd;
  # The unit's settings, shared with the lab (see systemd.services.deployd
  # below). `reloadSignal` is the signal that makes deployd re-read its config:
  # each side turns it into an ExecReload with a `kill` of its own (here
  # coreutils' from the store, in the lab the machine's), and `serviceConfig`
  # holds no program path.
  unit = lib.importJSON ./deployd-unit.json;
  inherit (lib) mkEnableOption mkIf mkOption literalExpression types;
  settingsFormat = pkgs.formats.toml {};
  allPermissions = ["deploy" "rollback" "downgrade" "read"];

  # One `[[trusted_keys]]` entry: one key (Nix-format or SSH) or one SSH CA.
  trustedKeyType = types.submodule (entry: {
    options = {
      key = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "ops-1:BASE64PUBLIC=";
        description = "The deploy key's public half, `NAME:base64`, as `nix-store --generate-binary-cache-key` or `push keygen` write it.";
      };
      key_file = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/agenix/ops-1.public";
        description = "Or a file holding it, read when deployd starts (a path as a string: it never enters the store).";
      };
      ssh = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "sk-ssh-ed25519@openssh.com AAAA... alice@kelyus";
        description = "Or an SSH public key, as its `authorized_keys` line (a `.pub` file's line): ssh-ed25519, ecdsa-sha2-nistp256 or their security-key forms (sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com), with the options `no-touch-required` and `verify-required` if wanted. `push` signs with it through ssh-agent.";
      };
      ssh_file = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/agenix/alice.pub";
        description = "Or a file holding one such line, read when deployd starts (a path as a string: it never enters the store).";
      };
      ssh_ca = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "ssh-ed25519 AAAA... fleet-ca";
        description = "Or an SSH CA's public key line: a user certificate it signed counts while it is valid and names one of `principals`.";
      };
      principals = mkOption {
        type = types.nullOr (types.listOf types.str);
        default =
          if entry.config.ssh_ca != null
          then ["deployer" "deployer@${cfg.settings.hostname}"]
          else null;
        defaultText = literalExpression ''if ssh_ca != null then ["deployer" "deployer@''${config.services.deployd.settings.hostname}"] else null'';
        example = ["deployer@sambirano"];
        description = "The certificate principals an `ssh_ca` entry accepts (only there). By default `deployer`, for certificates valid on every host of the fleet, and `deployer@HOST`, for certificates issued for this host alone (HOST is `settings.hostname`, the name deploy requests carry). Set `[\"deployer@HOST\"]` to accept host certificates only.";
      };
      may = mkOption {
        type = types.listOf (types.enum allPermissions);
        default = allPermissions;
        description = "What messages signed by this key (or with a certificate from this CA) may do.";
      };
    };
  });

  settingsLib = import ./settings.nix {inherit lib;};
  cleanSettings = settingsLib.withoutNulls cfg.settings;
  configFile = settingsFormat.generate "deployd.toml" cleanSettings;
  # `deployd check-config` at build time: a bad config fails the build. Key
  # files are runtime files (agenix, credentials): only their paths are checked.
  checkedConfig =
    pkgs.runCommand "deployd-config" {
      nativeBuildInputs = [cfg.checkPackage];
    } ''
      deployd check-config --skip-key-files --config ${configFile}
      cp ${configFile} $out
    '';

  port = lib.toInt (lib.last (lib.splitString ":" cfg.settings.listen));

  # What deployd pulls from by default: what the host's own Nix pulls from,
  # `substituters` then `extra-substituters` as nix.conf reads them (keys
  # likewise). NixOS always lists cache.nixos.org in `substituters` (with
  # mkAfter) and trusts its key, so the default includes it: a system's
  # closure is mostly nixpkgs paths, which caches that skip what
  # cache.nixos.org holds (attic, cachix) do not serve, and Nix checks every
  # path against the keys either way. What only the builders have, the
  # system itself, must come from a cache of the fleet's own: see the
  # assertions below. `extra-*` are free-form settings (NixOS declares
  # neither), a list or a space-separated string; a host without Nix
  # (`nix.enable = false`) has nothing to pull from.
  hostNixList = name: let
    value = config.nix.settings.${name} or [];
  in
    if !(config.nix.enable or true)
    then []
    else if builtins.isList value
    then value
    else if builtins.isString value
    then lib.filter (word: word != "") (lib.splitString " " value)
    else [];
  isCacheNixosOrg = url: lib.removeSuffix "/" url == "https://cache.nixos.org";
  # The caches and keys that are the fleet's own, not cache.nixos.org's.
  ownSubstituters = lib.filter (url: !isCacheNixosOrg url) cfg.settings.nix.substituters;
  ownCacheKeys = lib.filter (key: !lib.hasPrefix "cache.nixos.org-1:" key) cfg.settings.nix.trusted_public_keys;

  # Every `*_file` setting, with its path, to refuse secrets in the store.
  # `ca_file` holds CA certificates, which are public: it may be in the store
  # (a `./fleet-ca.pem` interpolated into a string).
  fileSettings =
    map (leaf: {
      inherit (leaf) name;
      value = toString leaf.value;
    })
    (lib.filter (leaf: lib.hasSuffix "_file" leaf.key && leaf.key != "ca_file" && leaf.value != null)
      (settingsLib.leaves cfg.settings));

  # `acmeCertificate`: the `security.acme.certs` entry deployd serves, its
  # files where nixpkgs' ACME module writes them (its `directory`), and the
  # unit that puts them in place: `acme-NAME.service` (a oneshot that
  # remains active) leaves a certificate there before it ends, a
  # self-signed one until the first is issued, so deployd, ordered after
  # it, always starts with a pair to load. Issuing and renewals
  # (`acme-order-renew-NAME.service`) rewrite the files later; deployd
  # serves the new pair from the next connection on, without a reload.
  acmeName = cfg.acmeCertificate;
  acmeDirectory = config.security.acme.certs.${acmeName}.directory or "/var/lib/acme/${acmeName}";
  acmeUnits = lib.optional (acmeName != null) "acme-${acmeName}.service";
in {
  # The forge service (`services.deployd.forge`, `push serve`).
  imports = [./forge.nix];

  options.services.deployd = {
    enable = mkEnableOption "deployd, which accepts signed deploy requests, pulls the system from trusted caches, switches and reports";

    package = mkOption {
      type = types.package;
      description = "The deployd package (the flake's module sets its own).";
    };

    checkPackage = mkOption {
      type = types.package;
      default =
        if pkgs.stdenv.buildPlatform.system == pkgs.stdenv.hostPlatform.system
        then cfg.package
        else pkgs.buildPackages.callPackage ./package.nix {crate = "deployd";};
      defaultText = literalExpression "config.services.deployd.package, or deployd for the build platform when cross-compiling";
      description = "The deployd that checks the config while the system is built: it runs on the build machine, so it is the build platform's (an aarch64 system built on an x86_64 builder checks its config with x86_64 deployd).";
    };

    trustedKeys = mkOption {
      type = types.listOf types.str;
      default = [];
      example = ["ops-1:BASE64PUBLIC="];
      description = "Shorthand: deploy keys trusted for everything (deploy, rollback, downgrade, read). Added to `settings.trusted_keys`.";
    };

    configFile = mkOption {
      type = types.unspecified;
      internal = true;
      readOnly = true;
      description = "The rendered config, before its build-time check (for inspection).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open deployd's port in the firewall.";
    };

    acmeCertificate = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "sambirano.example.org";
      description = "Serve deployd's API over HTTPS only, with the certificate that `security.acme.certs.<name>` obtains (the entry must exist): sets `settings.tls` to its directory's `fullchain.pem` and `key.pem` and starts deployd after `acme-<name>.service`, which puts a (self-signed, until the first is issued) certificate there. Renewals are served from the next connection on, without a restart. deployd runs as root, so it reads the key whatever the certificate's `group`.";
    };

    settings = mkOption {
      description = "deployd's config (`/etc/deployd/config.toml`); keys not declared here are passed through (see deployd's book: reference/config.md).";
      default = {};
      type = types.submodule {
        freeformType = settingsFormat.type;
        options = {
          listen = mkOption {
            type = types.str;
            default = "[::]:9797";
            description = "Address and port of deployd's HTTP API.";
          };
          hostname = mkOption {
            type = types.str;
            default = config.networking.hostName;
            defaultText = literalExpression "config.networking.hostName";
            description = "The host name deploy requests must name.";
          };
          state_dir = mkOption {
            type = types.str;
            default = "/var/lib/deployd";
            readOnly = true;
            description = "Where deployd keeps its records (systemd's StateDirectory).";
          };
          read_requires_signature = mkOption {
            type = types.bool;
            default = false;
            description = "Whether reads (status, records, events, metrics) need a signed `read` message.";
          };
          trusted_keys = mkOption {
            type = types.listOf trustedKeyType;
            default = [];
            description = "Who may sign what. Deploy keys, not cache keys.";
          };
          tls = mkOption {
            type = types.nullOr (types.submodule {
              options = {
                cert_file = mkOption {
                  type = types.str;
                  example = "/var/lib/acme/sambirano.example.org/fullchain.pem";
                  description = "The certificate chain (PEM): the host's certificate, then its intermediates. A path as a string.";
                };
                key_file = mkOption {
                  type = types.str;
                  example = "/run/agenix/deployd-tls.key";
                  description = "Its private key (PEM: PKCS#8, RSA or EC), as a path string: it never enters the store (agenix, sops-nix, an ACME directory).";
                };
              };
            });
            default = null;
            description = "When set, deployd serves HTTPS only, with this certificate and key. Both files are read again when they change (a renewal) and on reload; turning TLS on or off takes a restart. `acmeCertificate` sets it from `security.acme`.";
          };
          nix = {
            substituters = mkOption {
              type = types.listOf types.str;
              default = lib.unique (hostNixList "substituters" ++ hostNixList "extra-substituters");
              defaultText = literalExpression "config.nix.settings.substituters ++ config.nix.settings.extra-substituters";
              description = "The only binary caches systems are fetched from. By default those the host's Nix uses: its builders' caches (`nix.settings.extra-substituters`, or `substituters`) and cache.nixos.org, which NixOS adds. Setting this replaces the default; keep `https://cache.nixos.org/` in it when your cache leaves out what cache.nixos.org has (attic, cachix). Nix checks every path against `trusted_public_keys`.";
            };
            trusted_public_keys = mkOption {
              type = types.listOf types.str;
              default = lib.unique (hostNixList "trusted-public-keys" ++ hostNixList "extra-trusted-public-keys");
              defaultText = literalExpression "config.nix.settings.trusted-public-keys ++ config.nix.settings.extra-trusted-public-keys";
              description = "The only cache keys whose signatures are accepted: by default those the host's Nix trusts (its builders' keys and cache.nixos.org's).";
            };
            fast_fetch = mkOption {
              type = types.bool;
              default = true;
              description = "deployd walks the closure from the `http(s)://` caches with many requests in flight and downloads the NARs in parallel into a local stage, which Nix substitutes from first (Nix still checks every signature and hash). `false`: Nix fetches alone.";
            };
          };
          health = mkOption {
            type = types.submodule {
              freeformType = settingsFormat.type;
              options = {
                deadline_s = mkOption {
                  type = types.ints.positive;
                  default = 60;
                  description = "How long health checks may fail before the deploy rolls back.";
                };
                http = mkOption {
                  type = types.listOf types.str;
                  default = [];
                  example = ["http://127.0.0.1:8080/health"];
                  description = "URLs that must answer a GET with 2xx after a switch.";
                };
                allowed_failed_units = mkOption {
                  type = types.listOf types.str;
                  default = [];
                  description = "Units whose failure does not fail the systemd check.";
                };
                ca_file = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  example = "/etc/ssl/fleet-ca.pem";
                  description = "PEM certificates of CAs that `https://` health checks trust besides the system's roots (an internal CA). Public, so it may be in the store: `\"\${./fleet-ca.pem}\"`.";
                };
              };
            };
            default = {};
            description = "Health checks after a switch; see `[health]` in deployd's book (reference/config.md). Magic rollback is asked per deploy (`push --confirm SECONDS`).";
          };
          pull = mkOption {
            type = types.submodule {
              freeformType = settingsFormat.type;
              options = {
                channels = mkOption {
                  type = types.listOf types.str;
                  default = [];
                  example = ["https://deploy.example.org/v1/channel"];
                  description = "Channels this host pulls its signed desired state from (`http://`, `https://` or `file://`), for a host nobody can reach (NAT, a laptop, a machine often off); see deployd's book (design/channels.md). Never with a user or password in the URL.";
                };
                interval_s = mkOption {
                  type = types.ints.positive;
                  default = 60;
                  description = "Seconds between two polls of a channel, at most 86400 (each wait drawn between 0.8 and 1.2 times it); a push serve channel is long-polled instead.";
                };
                ca_file = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  example = "/etc/ssl/fleet-ca.pem";
                  description = "PEM certificates of CAs that `https://` channels are trusted with besides the system's roots. Public, so it may be in the store.";
                };
              };
            };
            default = {};
            description = "Pulling desired states from channels; see `[pull]` in deployd's book (reference/config.md). `max_desired_age_s` may be set here too.";
          };
        };
      };
    };
  };

  config = mkIf cfg.enable {
    services.deployd.settings.trusted_keys =
      map (key: {inherit key;}) cfg.trustedKeys;
    services.deployd.settings.tls = mkIf (acmeName != null) {
      cert_file = "${acmeDirectory}/fullchain.pem";
      key_file = "${acmeDirectory}/key.pem";
    };
    services.deployd.configFile = configFile;

    assertions =
      [
        {
          assertion = cfg.settings.trusted_keys != [];
          message = "services.deployd: no deploy key is trusted, so nothing could ever be deployed. Set services.deployd.trustedKeys = [ \"ops-1:...\" ] (the .public file `push keygen ops-1` wrote).";
        }
        {
          assertion = ownSubstituters != [];
          message = "services.deployd: deployd has no cache of your own to fetch systems from (${
            if cfg.settings.nix.substituters == []
            then "none at all"
            else "only cache.nixos.org, which never has your hosts' systems"
          }), so every deploy would end `fetch_failed`. Name your builders' cache and its key, for the host's Nix and deployd alike: nix.settings.extra-substituters = [ \"http://kelyus:5000\" ]; nix.settings.extra-trusted-public-keys = [ \"kelyus-1:...\" ]; (or, for deployd alone, services.deployd.settings.nix.substituters and services.deployd.settings.nix.trusted_public_keys).";
        }
        {
          assertion = ownSubstituters == [] || ownCacheKeys != [];
          message = "services.deployd: no key of your builders' caches (${lib.concatStringsSep ", " ownSubstituters}) is trusted, so Nix would refuse every system they serve and every deploy would end `fetch_failed`. Add their public keys: nix.settings.extra-trusted-public-keys = [ \"kelyus-1:...\" ]; (or, for deployd alone, services.deployd.settings.nix.trusted_public_keys).";
        }
      ]
      ++ lib.optional (acmeName != null) {
        assertion = config.security.acme.certs ? ${acmeName};
        message = "services.deployd: acmeCertificate = \"${acmeName}\" names no certificate of security.acme.certs (${
          if config.security.acme.certs == {}
          then "there are none"
          else lib.concatStringsSep ", " (lib.attrNames config.security.acme.certs)
        }). Declare it: security.acme.certs.\"${acmeName}\" = { dnsProvider = ...; }; (deployd's port is not 80: use a DNS challenge, or a webroot another server answers for).";
      }
      ++ lib.imap1 (index: key: {
        assertion = lib.count (value: value != null) [key.key key.key_file key.ssh key.ssh_file key.ssh_ca] == 1;
        message = "services.deployd: trusted key ${toString index} needs exactly one of `key`, `key_file`, `ssh`, `ssh_file` and `ssh_ca`.";
      })
      cfg.settings.trusted_keys
      ++ lib.imap1 (index: key: {
        assertion = key.principals == null || key.ssh_ca != null;
        message = "services.deployd: trusted key ${toString index} sets `principals`, which only an `ssh_ca` entry takes (the principals its certificates must name).";
      })
      cfg.settings.trusted_keys
      ++ map (setting: {
        assertion = !(lib.hasPrefix builtins.storeDir setting.value);
        message = "services.deployd: ${setting.name} = ${setting.value} is in the Nix store, which every user can read. Give secrets as paths outside the store, for example from agenix (/run/agenix/...) or systemd credentials.";
      })
      fileSettings;

    environment.etc."deployd/config.toml".source = checkedConfig;

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall port;

    # The unit's settings live in ./deployd-unit.json, which the lab also
    # reads, so the unit a lab host runs is the one rendered here.
    systemd.services.deployd = {
      inherit (unit) description;
      wantedBy = ["multi-user.target"];
      # With `acmeCertificate`, after the unit that puts its files in place.
      wants = ["network-online.target"] ++ acmeUnits;
      after = ["network-online.target"] ++ acmeUnits;
      # A switch never stops deployd midway: when a deploy brings another
      # deployd, the daemon records the deploy's end, then exits, and
      # Restart=always starts the new one (see deployd's book, design/crash-safety.md, Restarts).
      inherit (unit) restartIfChanged;
      # A new config is reloaded, never restarted into. switch-to-configuration
      # (nixpkgs' switch-to-configuration-ng, `compare_units` and
      # `handle_modified_unit`) compares the running unit's file with the new
      # one: when `X-Reload-Triggers` (what `reloadTriggers` renders) is all
      # that differs, it reloads the unit, after the activation has updated
      # /etc and systemd has re-read its units (a unit found inactive is
      # started instead). Any other difference (ExecStart, the environment,
      # ExecReload itself) marks the unit for a restart, which
      # `restartIfChanged = false` turns into nothing at all: neither restart
      # nor reload ("NOT restarting the following changed units"). So
      # ExecStart names /etc/deployd/config.toml, not the config's store path:
      # a new config changes the trigger alone, and deployd, sent the reload
      # signal (`reloadSignal` in ./deployd-unit.json), re-reads the file /etc
      # now points to, refusing a bad one and keeping the old. A new deployd
      # changes ExecStart: the switch leaves the unit alone and deployd
      # restarts into the new binary once idle, reading the config then.
      reloadTriggers = [checkedConfig];
      # The programs it calls: nix-store, nix-env, systemd-run, systemctl.
      path = [config.nix.package config.systemd.package];
      # Type=notify with WatchdogSec and Restart=always, its StateDirectory,
      # and only hardening that cannot stop it from activating a system
      # (LockPersonality, RestrictRealtime, UMask): it runs as root and must
      # write the store, the profiles, /boot, /etc and start and stop units,
      # so no ProtectSystem, ProtectHome, PrivateTmp, ProtectKernel* or
      # capability bounding.
      #
      # Limits, so that a runaway is killed in its own cgroup rather than by
      # the kernel's OOM killer anywhere on the machine; each a default that
      # a plain `systemd.services.deployd.serviceConfig.MemoryMax = "4G";`
      # replaces. Measured (debug build, loopback): deployd idles at 15 MB
      # (the book's benchmarks: 6 MB release) and 3 threads; 600 clients sending 256 KiB
      # envelopes slowly (512 served at once) took it to 183 MB and 261
      # threads. The cgroup also holds the fetch's `nix-store --realise`:
      # as root it substitutes in its own process, 16 paths at once, and
      # Nix before 2.24 may hold whole compressed NARs in memory meanwhile.
      # - MemoryMax=2G: ten times deployd's own peak, the rest for the fetch.
      # - TasksMax=1024: tokio's blocking pool alone may reach 512 threads,
      #   plus the runtime's and Nix's own.
      # - OOMPolicy=continue: a `nix-store` killed at the limit fails its
      #   fetch (`fetch_failed`) and deployd goes on; deployd killed itself
      #   is restarted (Restart=always) and reports the deploy it ran.
      serviceConfig =
        unit.serviceConfig
        // {
          ExecStart = "${cfg.package}/bin/deployd --config /etc/deployd/config.toml";
          ExecReload = "${pkgs.coreutils}/bin/kill -${unit.reloadSignal} $MAINPID";
        }
        // lib.mapAttrs (_: lib.mkDefault) (lib.getAttrs ["MemoryMax" "TasksMax" "OOMPolicy"] unit.serviceConfig);
    };
  };
}
