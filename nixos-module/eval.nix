# Evaluates the module with nixpkgs' `lib` alone (full nixpkgs is not needed):
# declarations stand in for the NixOS options the module reads and sets (those
# whose values decide what it renders are declared and set as NixOS does,
# each naming the nixpkgs file it follows), and a small `pkgs` stands in for
# what it uses (`formats.toml`, whose `generate` here renders TOML with
# `toTOML` below, `runCommand`, `git` and `util-linux` for the forge
# service's path and `coreutils` for the daemon's `kill`).
#
#   nix-instantiate --eval --strict --json nixos-module/eval.nix \
#     --arg lib 'import /path/to/nixpkgs.lib/lib' --arg host ./examples/sambirano.nix
{
  lib,
  host,
}: let
  inherit (lib) mkOption types;
  anything = mkOption {
    type = types.attrsOf types.anything;
    default = {};
  };
  stand-ins = {config, ...}: {
    options = {
      assertions = mkOption {
        type = types.listOf types.attrs;
        default = [];
      };
      systemd.services = anything;
      systemd.package = mkOption {default = "/nix/store/00000000000000000000000000000000-systemd";};
      nix.package = mkOption {default = "/nix/store/00000000000000000000000000000000-nix";};
      programs.ssh.package = mkOption {default = "/nix/store/00000000000000000000000000000000-openssh";};
      users.users = anything;
      users.groups = anything;
      # `nix.enable` and `nix.settings` as nixos/modules/config/nix.nix
      # declares them: a submodule whose undeclared keys (`extra-substituters`,
      # `extra-trusted-public-keys`, ...) are free-form, each an atom or a
      # list of atoms, present only when set; `substituters` and
      # `trusted-public-keys` have no default of their own (their values are
      # set below, as there), `allowed-users` defaults to everyone.
      nix.enable = mkOption {
        type = types.bool;
        default = true;
      };
      nix.settings = mkOption {
        type = types.submodule {
          freeformType = let
            atom = types.nullOr (types.oneOf [types.bool types.int types.str types.path]);
          in
            types.attrsOf (types.either atom (types.listOf atom));
          options = {
            substituters = mkOption {type = types.listOf types.str;};
            trusted-public-keys = mkOption {type = types.listOf types.str;};
            allowed-users = mkOption {
              type = types.listOf types.str;
              default = ["*"];
            };
          };
        };
        default = {};
      };
      networking.hostName = mkOption {type = types.str;};
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [];
      };
      environment.etc = anything;
      # `security.acme` as nixos/modules/security/acme/default.nix declares
      # what the module reads: `certs.<name>.directory` (read-only,
      # /var/lib/acme/<name>, where the certificate's files are written) and
      # `group`; the rest of a certificate's settings are free-form here.
      security.acme = {
        acceptTerms = mkOption {
          type = types.bool;
          default = false;
        };
        defaults = anything;
        certs = mkOption {
          type = types.attrsOf (types.submodule ({name, ...}: {
            freeformType = types.attrsOf types.anything;
            options = {
              directory = mkOption {
                type = types.str;
                readOnly = true;
                default = "/var/lib/acme/${name}";
              };
              group = mkOption {
                type = types.str;
                default = "acme";
              };
            };
          }));
          default = {};
        };
      };
      # Options of the example builders, outside the module.
      services.harmonia = anything;
      age.secrets = anything;
      nix.distributedBuilds = mkOption {default = false;};
      nix.buildMachines = mkOption {
        type = types.listOf types.anything;
        default = [];
      };
    };
    # What nixos/modules/config/nix.nix sets whenever Nix is enabled:
    # cache.nixos.org after the host's own substituters (mkAfter, so a host's
    # list adds to it and only mkForce removes it) and its key beside the
    # host's keys.
    config.nix.settings = lib.mkIf config.nix.enable {
      substituters = lib.mkAfter ["https://cache.nixos.org/"];
      trusted-public-keys = ["cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="];
    };
  };

  # TOML, enough for deployd's config: tables, arrays of tables, strings,
  # integers, booleans and lists of them.
  toTOML = let
    value = v:
      if builtins.isString v
      then builtins.toJSON v
      else if builtins.isBool v
      then lib.boolToString v
      else if builtins.isInt v
      then toString v
      else if builtins.isList v
      then "[" + lib.concatMapStringsSep ", " value v + "]"
      else throw "toTOML: unsupported value ${builtins.typeOf v}";
    isTable = v: builtins.isAttrs v;
    isTableList = v: builtins.isList v && v != [] && builtins.all builtins.isAttrs v;
    table = prefix: attrs: let
      plain = lib.filterAttrs (_: v: !(isTable v) && !(isTableList v)) attrs;
      tables = lib.filterAttrs (_: isTable) attrs;
      tableLists = lib.filterAttrs (_: isTableList) attrs;
      name = key: lib.concatStringsSep "." (prefix ++ [key]);
    in
      lib.concatStrings (lib.mapAttrsToList (k: v: "${k} = ${value v}\n") plain)
      + lib.concatStrings (lib.mapAttrsToList (k: v: "\n[${name k}]\n" + table (prefix ++ [k]) v) tables)
      + lib.concatStrings (lib.mapAttrsToList (k: vs: lib.concatMapStrings (v: "\n[[${name k}]]\n" + table (prefix ++ [k]) v) vs) tableLists);
  in
    table [];

  pkgs = {
    formats.toml = {}: {
      type = types.attrsOf types.anything;
      generate = name: value: {
        inherit name;
        text = toTOML value;
      };
    };
    runCommand = name: _: _: "/nix/store/00000000000000000000000000000000-${name}";
    git = "/nix/store/00000000000000000000000000000000-git";
    coreutils = "/nix/store/00000000000000000000000000000000-coreutils";
    util-linux = "/nix/store/00000000000000000000000000000000-util-linux";
  };

  evaluated = lib.evalModules {
    modules = [./default.nix stand-ins host];
    specialArgs = {inherit pkgs;};
  };
  inherit (evaluated) config;
in {
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  # The configs the module renders, through the `generate` stand-in.
  configToml =
    if config.services.deployd.enable
    then config.services.deployd.configFile.text
    else null;
  forgeConfigToml =
    if config.services.deployd.forge.enable
    then config.services.deployd.forge.configFile.text
    else null;
  unit = let
    service = config.systemd.services.deployd or {};
  in
    if config.services.deployd.enable
    then {
      inherit (service) description wantedBy wants after restartIfChanged reloadTriggers;
      serviceConfig = service.serviceConfig;
    }
    else null;
  forgeUnit = let
    service = config.systemd.services.deployd-forge or {};
  in
    if config.services.deployd.forge.enable
    then {
      inherit (service) description wantedBy wants after path restartIfChanged;
      serviceConfig = service.serviceConfig;
      user = config.users.users.${service.serviceConfig.User};
      buildUser = config.users.users.${config.services.deployd.forge.settings.build.user} or null;
    }
    else null;
  firewall = config.networking.firewall.allowedTCPPorts;
  etc = builtins.attrNames config.environment.etc;
}
