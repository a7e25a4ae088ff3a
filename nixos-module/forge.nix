# deployd's forge service: `services.deployd.forge`, which runs
# `push serve` on a build machine: a push to the forge deploys the hosts that
# follow the branch, and the forge shows each host's result on the commit.
#
#   services.deployd.forge = {
#     enable = true;
#     settings = {
#       repository = "https://git.example.org/ops/fleet.git";
#       key_file = "/run/agenix/ci-1.secret";
#       forge = { kind = "forgejo"; ... };
#       follow = [ { branch = "main"; } ];
#     };
#   };
#
# Like the daemon's, the settings are rendered to TOML and checked at build
# time (`push serve --check`), so a bad config fails the build, not the host.
#
# Two users: `deployd-forge` runs the service and alone reads its secrets
# (mode 0400); `deployd-forge-build`, in its group, evaluates and builds the
# fleet's flake (push serve starts those Nix commands through setpriv), so a
# commit's flake cannot read a secret (a `path:` input to a token) and copy
# it into the store.
{
  config,
  lib,
  pkgs,
  ...
}: let
  cfg = config.services.deployd.forge;
  # The unit's settings, in the same shape as ./deployd-unit.json (see
  # systemd.services.deployd-forge below); its user is the one declared here.
  unit = lib.importJSON ./deployd-forge-unit.json;
  user = unit.serviceConfig.User;
  group = unit.serviceConfig.Group;
  # The user that evaluates and builds (settings.build.user): created here
  # when it is the default one.
  defaultBuildUser = "deployd-forge-build";
  buildUser = cfg.settings.build.user;
  inherit (lib) mkEnableOption mkIf mkOption literalExpression types;
  settingsFormat = pkgs.formats.toml {};
  settingsLib = import ./settings.nix {inherit lib;};

  # A secret, given as a path that is read when the service starts.
  secretFile = description: example:
    mkOption {
      type = types.str;
      inherit example;
      description = "${description} A path as a string, outside the store (agenix, systemd credentials), readable by the `${user}` user alone (mode 0400: its build user, in its group, must not read it).";
    };

  followType = types.submodule {
    freeformType = settingsFormat.type;
    options = {
      branch = mkOption {
        type = types.str;
        example = "main";
        description = "The branch whose pushes deploy.";
      };
      hosts = mkOption {
        type = types.listOf types.str;
        default = ["*"];
        example = ["sambirano" "pi"];
        description = "The hosts that follow it, as `push --on` names them: names, globs (`web-*`) and tags (`@prod`) of `push.toml` at the flake's root, or `\"*\"` for all of them. `canary`, `batch` and `max_failures` (as `push --canary`, `--batch`, `--max-failures`) stage the rollout.";
      };
      action = mkOption {
        type = types.enum ["switch" "boot" "test" "dry-activate"];
        default = "switch";
        description = "What each host does with its new system, as `push --action`.";
      };
      confirm_s = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        example = 120;
        description = "Magic rollback, as `push --confirm`: a host that cannot be reached this many seconds after its switch rolls back. Off when null.";
      };
    };
  };

  cleanSettings = settingsLib.withoutNulls cfg.settings;
  configFile = settingsFormat.generate "deployd-forge.toml" cleanSettings;
  # `push serve --check` at build time: a bad config fails the build. The
  # secret files are runtime files (agenix, credentials): only their paths
  # are checked.
  checkedConfig =
    pkgs.runCommand "deployd-forge-config" {
      nativeBuildInputs = [cfg.checkPackage];
    } ''
      push serve --config ${configFile} --check --skip-secret-files
      cp ${configFile} $out
    '';

  port = lib.toInt (lib.last (lib.splitString ":" cfg.settings.listen));

  leaves = settingsLib.leaves cfg.settings;
  # Every `*_file` setting, to refuse secrets in the store; but `ca_file`
  # holds CA certificates, which are public and may well be in the store.
  fileSettings = lib.filter (leaf: lib.hasSuffix "_file" leaf.key && leaf.key != "ca_file" && leaf.value != null) leaves;
  # Every setting whose name says it holds a secret itself (`token`,
  # `webhook_secret`, `password`, ...): secrets are only ever given as files.
  secretWords = ["secret" "secrets" "token" "tokens" "key" "keys" "password" "passwords" "passphrase"];
  inlineSecrets = lib.filter (leaf: let
    words = lib.splitString "_" leaf.key;
  in
    leaf.value != null && lib.last words != "file" && lib.any (word: lib.elem word secretWords) words)
  leaves;
  allowedUsers = config.nix.settings.allowed-users or ["*"];
  # `settings.build.copy_to` when it is a local folder (file:///srv/cache).
  copyTo = cfg.settings.build.copy_to;
  copyFolder =
    if copyTo != null && lib.hasPrefix "file://" copyTo
    then lib.head (lib.splitString "?" (lib.removePrefix "file://" copyTo))
    else null;
in {
  options.services.deployd.forge = {
    enable = mkEnableOption "deployd's forge service (`push serve`), which deploys the hosts that follow a branch when it is pushed to, and reports each host's result on the commit";

    package = mkOption {
      type = types.package;
      description = "The package that carries `push` (the flake's module sets its own, `packages.<system>.push`).";
    };

    checkPackage = mkOption {
      type = types.package;
      default =
        if pkgs.stdenv.buildPlatform.system == pkgs.stdenv.hostPlatform.system
        then cfg.package
        else pkgs.buildPackages.callPackage ./package.nix {crate = "deployd-push";};
      defaultText = literalExpression "config.services.deployd.forge.package, or push for the build platform when cross-compiling";
      description = "The `push` that checks the config while the system is built: it runs on the build machine, so it is the build platform's.";
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
      description = "Open the service's port (from `settings.listen`) in the firewall, for the forge's webhooks.";
    };

    settings = mkOption {
      description = "`push serve`'s config (`/etc/deployd/forge.toml`); keys not declared here are passed through (see deployd's book: reference/serve-config.md). Secrets only as `*_file` paths.";
      default = {};
      type = types.submodule {
        freeformType = settingsFormat.type;
        options = {
          listen = mkOption {
            type = types.str;
            default = "[::]:9798";
            description = "Address and port of the webhooks, the fleet's pages (`/`, `/rollouts/ID`, `/hosts/H`) and of `/v1/status`, `/metrics` and `/healthz`.";
          };
          public_url = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "https://deploy.example.org";
            description = "Where people reach the service's pages (through a reverse proxy, usually one that asks for the forge's login): every commit status links to its rollout's page there. Without it, statuses carry no link.";
          };
          state_dir = mkOption {
            type = types.str;
            default = "/var/lib/deployd-forge";
            readOnly = true;
            description = "Where the service keeps its clone of the repository, its queue and its history (systemd's StateDirectory, also its user's home).";
          };
          repository = mkOption {
            type = types.str;
            example = "https://git.example.org/ops/fleet.git";
            description = "The fleet's repository, fetched from this URL (never from a webhook's payload). `push.toml` at its flake's root gives the hosts; how they are built is `settings.build`'s, never the repository's.";
          };
          key_file = secretFile "The service's own deploy key (secret, `NAME:base64`, as `push keygen` writes it); hosts trust its public half with `may = [\"deploy\" \"read\"]`." "/run/agenix/ci-1.secret";
          git = mkOption {
            type = types.nullOr (types.submodule {
              freeformType = settingsFormat.type;
              options = {
                username = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  example = "deployd";
                  description = "The user name for fetching over https.";
                };
                password_file = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  example = "/run/agenix/git-token";
                  description = "A file holding the password or access token for fetching over https (never plain http). It goes only to the repository's scheme, host and port.";
                };
                ssh_key_file = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  example = "/run/agenix/git-ssh-key";
                  description = "A file holding the SSH private key for fetching over SSH.";
                };
              };
            });
            default = null;
            description = "Credentials for fetching the repository, from files. None by default (a public repository, or a local one).";
          };
          forge = mkOption {
            description = "The forge whose webhooks are received and where commit statuses are posted.";
            default = {};
            type = types.submodule {
              freeformType = settingsFormat.type;
              options = {
                kind = mkOption {
                  type = types.enum ["github" "gitea" "forgejo" "gitlab"];
                  example = "forgejo";
                  description = "Which forge: it decides how webhooks are authenticated and how statuses are posted.";
                };
                api_url = mkOption {
                  type = types.str;
                  example = "https://git.example.org";
                  description = "The forge's base URL for its API (`https://api.github.com` for GitHub).";
                };
                repository = mkOption {
                  type = types.str;
                  example = "ops/fleet";
                  description = "The repository on the forge, `owner/name`; on GitLab, the project's path or id.";
                };
                secret_file = secretFile "A file holding the webhook's secret (GitLab: its token)." "/run/agenix/webhook-secret";
                token_file = secretFile "A file holding the API token the service posts commit statuses with." "/run/agenix/forge-token";
              };
            };
          };
          build = mkOption {
            description = "The build machine's own settings (`[build]`), never the repository's: push.toml's `build_host`, `copy_to` and `sign_key_file` are ignored.";
            default = {};
            type = types.submodule {
              freeformType = settingsFormat.type;
              options = {
                build_host = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  example = "nix-builder@kelyus";
                  description = "Build there over SSH (ssh-ng, as `push --build-host`) instead of on this machine. The SSH key comes from `NIX_SSHOPTS` in the unit's environment, the host's key from `programs.ssh.knownHosts`.";
                };
                copy_to = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  example = "file:///srv/cache";
                  description = "Copy built closures to this store, the hosts' cache (`file:///srv/cache`, `ssh-ng://`, `s3://`, ...). A local folder is made writable for the unit (ReadWritePaths).";
                };
                sign_key_file = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  example = "/run/agenix/cache.secret";
                  description = "A file holding the cache signing key (secret, readable by the `${user}` user alone) the closures are signed with while they are copied to `copy_to`.";
                };
                user = mkOption {
                  type = types.str;
                  default = defaultBuildUser;
                  description = "The user that evaluates and builds the fleet's flake: not the service's, and able to read none of its secret files (push serve checks that before every build). The default one is created here, in the service's group.";
                };
                group = mkOption {
                  type = types.str;
                  default = group;
                  description = "The build user's group, through which it reads the service's clone of the repository.";
                };
              };
            };
          };
          follow = mkOption {
            type = types.listOf followType;
            default = [];
            example = literalExpression ''[ { branch = "main"; hosts = [ "*" ]; confirm_s = 120; } ]'';
            description = "The branches that deploy, and which hosts follow each.";
          };
        };
      };
    };
  };

  config = mkIf cfg.enable {
    services.deployd.forge.configFile = configFile;

    assertions =
      [
        {
          assertion = cfg.settings.follow != [];
          message = "services.deployd.forge: settings.follow is empty, so no push would ever deploy. Add a branch: settings.follow = [ { branch = \"main\"; } ].";
        }
        {
          assertion = lib.all (name: lib.elem "*" allowedUsers || lib.elem name allowedUsers || lib.elem "@${group}" allowedUsers) [user buildUser];
          message = "services.deployd.forge: nix.settings.allowed-users does not let the `${user}` user and its build user `${buildUser}` use the Nix daemon, so it could not build. Add \"${user}\" and \"${buildUser}\" (or \"@${group}\") to it.";
        }
        {
          assertion = buildUser != user && buildUser != "root";
          message = "services.deployd.forge: settings.build.user is `${buildUser}`, who can read the service's secrets, so a commit's flake could copy them into the store. Leave it to its default, `${defaultBuildUser}`.";
        }
      ]
      ++ map (leaf: {
        assertion = false;
        message = "services.deployd.forge: settings.${leaf.name} would put a secret in the config, which is in the Nix store, where every user can read it. Give it as a file instead (a `*_file` setting, for example from agenix: /run/agenix/...).";
      })
      inlineSecrets
      ++ map (leaf: {
        assertion = !(lib.isPath leaf.value) && !(lib.hasPrefix builtins.storeDir (toString leaf.value));
        message = "services.deployd.forge: ${leaf.name} = ${toString leaf.value} is in the Nix store (or a Nix path, which would be copied there), which every user can read. Give secrets as paths outside the store, as strings, for example from agenix (/run/agenix/...) or systemd credentials.";
      })
      fileSettings;

    # A user of its own, not root: building only needs the Nix daemon, which
    # builds for any allowed user (`nix eval`, `nix-store --realise`, indirect
    # GC roots), and `nix copy --to 'file:///srv/cache?secret-key=...'` signs
    # in the client, so it needs no `trusted-users` either. Its home is its
    # state directory: its GC roots (~/.local/state/deployd/gc-roots) and
    # ~/.ssh live there. The secret files must be readable by this user
    # alone (agenix: `owner = "deployd-forge"`, its default mode 0400), or
    # passed with LoadCredential.
    #
    # The build user evaluates and builds (push serve runs `nix eval` and
    # `nix-store --realise` as it, through setpriv): in the service's group,
    # it reads the clone (UMask 0027, StateDirectoryMode 0750) but no secret;
    # its home is `state_dir/build` (Nix's caches), which push serve makes.
    # The service keeps the GC roots and copies and signs what was built.
    users.users =
      {
        ${user} = {
          isSystemUser = true;
          inherit group;
          home = cfg.settings.state_dir;
          description = "deployd forge service";
        };
      }
      // lib.optionalAttrs (buildUser == defaultBuildUser) {
        ${buildUser} = {
          isSystemUser = true;
          inherit group;
          description = "deployd forge service: evaluates and builds the fleet's flake";
        };
      };
    users.groups.${group} = {};

    environment.etc."deployd/forge.toml".source = checkedConfig;

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall port;

    # The unit's settings live in ./deployd-forge-unit.json, in the shape of
    # the daemon's ./deployd-unit.json:
    # - Type=notify, WatchdogSec=60, Restart=always, like the daemon, but
    #   restarted when it changes (restartIfChanged): it holds nothing that a
    #   restart loses, since an accepted push survives one, and the hosts'
    #   deployd carry out the deploys it sent.
    # - StateDirectory (its clone, queue, history, GC roots) and CacheDirectory
    #   (XDG_CACHE_HOME: Nix's fetcher and evaluation caches, safe to lose).
    # - Hardening that leaves what building needs: the Nix daemon's socket
    #   (connecting to a socket works on ProtectSystem=strict's read-only
    #   /nix), the network (IPv4, IPv6, Unix sockets; netlink for glibc's
    #   address lookups), `nix`, `git` and `ssh` as child processes. No
    #   SystemCallFilter or MemoryDenyWriteExecute, which would have to fit
    #   every program Nix, git and ssh may start; no PrivateUsers, under which
    #   ssh would see its key files owned by nobody.
    # - Two capabilities, CAP_SETUID and CAP_SETGID (ambient, and the whole
    #   bounding set): push serve needs them to start its Nix commands as
    #   the build user through setpriv, which drops them (and every other
    #   capability and group) for those commands. A service that can switch
    #   users is trusted code; it already holds the deploy key. The
    #   alternative, a transient unit per build (`systemd-run -p
    #   DynamicUser=yes`), would need polkit to let this user start units,
    #   which is worth root.
    # - UMask 0027 and StateDirectoryMode 0750: the build user (the
    #   service's group) reads the clone; nothing secret is ever written
    #   there.
    # - ProtectSystem=strict: `settings.build.copy_to` as a local folder
    #   (file:///srv/cache) is added to ReadWritePaths.
    # - Limits, so that a runaway is killed in its own cgroup rather than by
    #   the kernel's OOM killer among the machine's builds; each a default
    #   that a plain `systemd.services.deployd-forge.serviceConfig.MemoryMax
    #   = "16G";` replaces. Measured (debug build, loopback): push serve
    #   idles at 23 MB and 3 threads; 600 slow 5 MiB hooks took it to
    #   54 MB, 600 of 60 KB (all read at once) to 66 MB, both with 3
    #   threads; a lab rollout (toy systems) to 29 MB, 80 MB with its
    #   `nix eval` and `nix-store`. What needs room is that evaluation: it
    #   runs in this cgroup (builds run in nix-daemon's), evaluates every
    #   host of the branch in one `nix eval`, and a real NixOS system takes
    #   far more than a toy (hundreds of MB to over a GB each), growing
    #   with the fleet: so a share of the machine, not a fixed size.
    #   MemoryMax=50% leaves the builds the other half even when a commit's
    #   evaluation runs away. TasksMax=1024: tokio's blocking pool alone may
    #   reach 512 threads, plus Nix's, git's and ssh's. OOMPolicy=continue:
    #   an evaluation killed at the limit ends its rollout `error` and the
    #   service goes on taking hooks.
    systemd.services.deployd-forge = {
      inherit (unit) description restartIfChanged;
      wantedBy = ["multi-user.target"];
      wants = ["network-online.target"];
      after = ["network-online.target" "nix-daemon.socket"];
      # nix (evaluating, building, copying), git (Nix fetches git+file
      # flakes with it), ssh (ssh-ng:// stores and the build host), setpriv
      # (util-linux: Nix as the build user).
      path = [config.nix.package pkgs.git config.programs.ssh.package pkgs.util-linux];
      serviceConfig =
        unit.serviceConfig
        // {
          ExecStart = "${cfg.package}/bin/push serve --config ${checkedConfig}";
        }
        // lib.optionalAttrs (copyFolder != null) {
          ReadWritePaths = [copyFolder];
        }
        // lib.mapAttrs (_: lib.mkDefault) (lib.getAttrs ["MemoryMax" "TasksMax" "OOMPolicy"] unit.serviceConfig);
    };
  };
}
