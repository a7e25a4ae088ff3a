# A toy NixOS system: a faithful stand-in for a real `toplevel`, built with
# /bin/sh alone (there is no nixpkgs in the lab).
#
# Its toplevel has what a NixOS one has and deployd reads (nixpkgs:
# nixos/modules/system/activation/top-level.nix): `nixos-version`, `system`
# (the platform it claims), `init-interface-version`, `kernel`, `initrd`,
# `kernel-modules`, `etc`, `activate` and `dry-activate`, `specialisation/`
# (a full system of its own under each name), `switch-inhibitors` (JSON;
# switchable-system.nix), plus dependencies in its closure. Its build fails
# when the settings say so.
#
# `bin/switch-to-configuration` is a wrapper as makeWrapper writes it
# (switchable-system.nix): it exports OUT, TOPLEVEL, DISTRO_ID,
# INSTALL_BOOTLOADER, PRE_SWITCH_CHECK (the store path of the system's
# pre-switch checks; pre-switch-check.nix), LOCALE_ARCHIVE and SYSTEMD, then
# execs `bin/.switch-to-configuration-wrapped`, a link to the lab's
# stand-in for switch-to-configuration-ng (switch-to-configuration.sh,
# beside this file, which says what it does and where it follows nixpkgs).
# The pre-switch checks compare the switch inhibitors with the running
# system's and, when the settings say so, refuse. The boot loader is a link,
# /var/lib/lab/boot-default. The activation script installs the system's
# units, brings eth0 up (or down, for a system built to break the network),
# fails (and goes on) when the settings say so or /var/lib/lab/fail-switch
# exists on the host, and makes the system current.
#
# A system carries unit files in etc/systemd/system: `lab.target` (what a
# lab host boots into, as NixOS's multi-user.target) and the services it
# wants: `lab-app.service` (which changes with the label),
# `lab-broken.service` when the settings say the host's system has a service
# that fails, the services the settings add for the host (each failing or
# not), and `deployd.service` when they give one (marked
# `X-RestartIfChanged=false`, as the NixOS module marks deployd).
#
# The hosts the settings' `deployd.hosts` name enable deployd as the NixOS
# module does (`services.deployd`, which the flake shows): their system
# carries `deployd.service`, running the given deployd with a config of
# its own in the store, and an etc/nix.conf that trusts the same caches.
# A host's `hosts/HOST/hardware-configuration.nix`, when the flake has one,
# is imported as NixOS imports it; its file systems go to etc/fstab.
{
  host,
  settings,
  # The specialisation this system is (specialisation.nix), or null.
  specialisation ? null,
}: let
  inherit (settings) system;
  # Builds have no PATH; name every tool.
  buildWith = attrs: name: script:
    derivation ({
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          script
        ];
      }
      // attrs);
  build = buildWith {};
  has = list: builtins.elem host list;
  flag = list:
    if has list
    then "1"
    else "";
  kernel = build "linux-${settings.kernel}" ''
    /bin/mkdir -p $out
    echo "toy kernel ${settings.kernel}" > $out/bzImage
  '';
  kernelModules = build "linux-${settings.kernel}-modules" ''
    /bin/mkdir -p $out/lib/modules/${settings.kernel}
  '';
  initrd = build "initrd-linux-${settings.kernel}" ''
    /bin/mkdir -p $out
    echo "toy initrd for ${settings.kernel}" > $out/initrd
  '';
  variant =
    if specialisation == null
    then ""
    else " in specialisation ${specialisation}";
  appUnit = ''
    [Unit]
    Description=lab application of ${host}, label ${settings.label}${variant}

    [Service]
    Type=oneshot
    RemainAfterExit=yes
    ExecStart=/bin/sh -c "echo lab-app of ${host} runs label ${settings.label}${variant}"
  '';
  # Type=oneshot: its start job ends with its failure, so the switch that
  # starts it sees it failed.
  brokenUnit = ''
    [Unit]
    Description=a service of ${host} that fails on purpose

    [Service]
    Type=oneshot
    ExecStart=/bin/sh -c "echo lab-broken fails on purpose; exit 3"
  '';
  addedUnit = unit:
    if unit.fails
    then ''
      [Unit]
      Description=a service of ${host} that lab.target wants, failing

      [Service]
      Type=oneshot
      ExecStart=/bin/sh -c "echo ${unit.unit} fails; exit 1"
    ''
    else ''
      [Unit]
      Description=a service of ${host} that lab.target wants

      [Service]
      Type=oneshot
      RemainAfterExit=yes
      ExecStart=/bin/sh -c "echo ${unit.unit} runs"
    '';
  addedUnits = builtins.filter (unit: unit.host == host) settings.targetUnits;
  deployd = settings.deployd or {hosts = [];};
  deploydEnabled = has deployd.hosts;
  deploydUnit =
    if deploydEnabled
    then builtins.replaceStrings ["@deploydConfig@"] ["${deploydConfig}"] deployd.unit
    else settings.deploydUnit;
  # The system's units, by file name; every service is wanted by lab.target,
  # as a NixOS service by multi-user.target (`wantedBy`).
  units =
    {
      "lab.target" = settings.labTarget;
      "lab-app.service" = appUnit;
    }
    // (
      if has settings.failUnit
      then {"lab-broken.service" = brokenUnit;}
      else {}
    )
    // (
      if deploydUnit != ""
      then {"deployd.service" = deploydUnit;}
      else {}
    )
    // builtins.listToAttrs (map (unit: {
        name = unit.unit;
        value = addedUnit unit;
      })
      addedUnits);
  unitNames = builtins.attrNames units;
  services = builtins.filter (name: builtins.match ".*\\.service" name != null) unitNames;
  # TOML's basic strings and arrays of them read JSON's.
  toml = builtins.toJSON;
  deploydConfig = builtins.toFile "deployd-${host}.toml" (''
      listen = "0.0.0.0:9797"
      hostname = ${toml host}
      state_dir = "/var/lib/deployd"
    ''
    + builtins.concatStringsSep "" (map (key: ''

        [[trusted_keys]]
        key = ${toml key}
      '')
      deployd.trustedKeys)
    + ''

      [nix]
      substituters = ${toml deployd.substituters}
      trusted_public_keys = ${toml deployd.trustedPublicKeys}
    '');
  hardwareFile = ./. + "/hosts/${host}/hardware-configuration.nix";
  hardware =
    if builtins.pathExists hardwareFile
    then
      import hardwareFile {
        config = {};
        lib.mkDefault = value: value;
        pkgs = {};
        modulesPath = "/modules";
      }
    else {};
  fileSystems = hardware.fileSystems or {};
  fstab = builtins.concatStringsSep "" (map (mountPoint: let
    fs = fileSystems.${mountPoint};
  in "${fs.device} ${mountPoint} ${fs.fsType} defaults 0 0\n") (builtins.attrNames fileSystems));
  # The text of the unit `unitNames` names N-th (from 0) is in the
  # variable `unitN` of the build.
  etc = buildWith ({
      inherit fstab;
      unitNames = builtins.concatStringsSep " " unitNames;
      services = builtins.concatStringsSep " " services;
      nixConf =
        if deploydEnabled
        then "sandbox = false\nbuild-users-group =\nsubstituters = ${toString deployd.substituters}\ntrusted-public-keys = ${toString deployd.trustedPublicKeys}\nrequire-sigs = true\n"
        else "";
    }
    // builtins.listToAttrs (builtins.genList (index: {
      name = "unit${toString index}";
      value = units.${builtins.elemAt unitNames index};
    }) (builtins.length unitNames))) "etc-${host}" ''
    /bin/mkdir -p $out/systemd/system/lab.target.wants
    echo ${host} > $out/hostname
    echo ${settings.label} > $out/label
    index=0
    for unit in $unitNames; do
      eval "text=\$unit$index"
      printf '%s' "$text" > $out/systemd/system/$unit
      index=$((index + 1))
    done
    for unit in $services; do
      /bin/ln -s ../$unit $out/systemd/system/lab.target.wants/$unit
    done
    if [ -n "$nixConf" ]; then
      printf '%s' "$nixConf" > $out/nix.conf
    fi
    if [ -n "$fstab" ]; then
      printf '%s' "$fstab" > $out/fstab
    fi
  '';
  # The bulk paths, for benchmarks: files of random bytes in `levels`
  # levels of about equal size (one level: a flat closure, as before levels
  # came). A path of level k > 0 starts with the names of two paths of
  # level k - 1, so it references them, as a library references those it
  # links to: the longest chain of references is `levels` paths, as a
  # NixOS system's, glibc at the bottom, is some ten to fifteen.
  bulkCount = settings.bulk.paths;
  bulkLevels = let
    levels = settings.bulk.levels or 1;
  in
    if levels < 1
    then 1
    else if levels > bulkCount
    then bulkCount
    else levels;
  # The first index of level `level` (bulkCount for the level past the last).
  levelStart = level: (level * bulkCount + bulkLevels - 1) / bulkLevels;
  levelOf = index: index * bulkLevels / bulkCount;
  below = index: let
    level = levelOf index;
    start = levelStart (level - 1);
    size = levelStart level - start;
    offset = index - levelStart level;
    pick = step: builtins.elemAt bulk (start + (offset + step) - size * ((offset + step) / size));
  in
    if level == 0
    then []
    else if size == 1
    then [(pick 0)]
    else [(pick 0) (pick 1)];
  bulkPath = index: let
    references = below index;
  in
    build "bulk-${toString index}" (
      if references == []
      then ''
        /usr/bin/head -c ${toString settings.bulk.bytesPerPath} /dev/urandom > $out
      ''
      else ''
        echo "${builtins.concatStringsSep " " references}" > $out
        /usr/bin/head -c ${toString settings.bulk.bytesPerPath} /dev/urandom >> $out
      ''
    );
  bulk = builtins.genList bulkPath bulkCount;
  # An executable `$out/bin/NAME` holding `text`.
  script = name: text:
    buildWith {inherit text;} name ''
      /bin/mkdir -p $out/bin
      printf '%s' "$text" > $out/bin/${name}
      /bin/chmod 0555 $out/bin/${name}
    '';
  # The switch program every system's wrapper runs, as every NixOS system's
  # runs switch-to-configuration-ng's.
  switchProgram = build "switch-to-configuration-toy" ''
    /bin/mkdir -p $out/bin
    /bin/cp ${./switch-to-configuration.sh} $out/bin/switch-to-configuration
    /bin/chmod 0555 $out/bin/switch-to-configuration
  '';
  # INSTALL_BOOTLOADER (switchable-system.nix): given the system, makes it
  # the boot menu's default; the lab's boot menu is a link.
  installBootLoader = script "install-boot-loader" ''
    #!/bin/sh
    export PATH=/usr/bin:/bin
    mkdir -p /var/lib/lab
    ln -sfn "$1" /var/lib/lab/boot-default
  '';
  # The switch inhibitors (switchable-system.nix, `system.switch.inhibitors`):
  # names and values; a value that differs from the running system's
  # refuses a switch. NixOS names the D-Bus implementation among them.
  inhibitors = builtins.toFile "switch-inhibitors" (builtins.toJSON {
    dbus-implementation =
      if has settings.changedInhibitors
      then "broker"
      else "dbus";
  });
  # The checks `system.preSwitchChecks` holds (pre-switch-check.nix): each
  # runs with the new system and the action, its output to stderr; the
  # first that fails ends the script with status 1.
  preSwitchChecks =
    {
      # switchable-system.nix: skipped for boot and dry-activate; a value
      # of the running system's `switch-inhibitors` that the new system
      # has too and changes refuses the switch, naming it. (The lab's
      # inhibitors are flat JSON objects of plain words.)
      switchInhibitors = ''
        action="$2"
        case "$action" in
          boot | dry-activate)
            echo "not checking switch inhibitors (action $action)"
            exit 0
            ;;
        esac
        printf 'checking switch inhibitors...'
        # "NAME VALUE" lines (the file has no newline of its own).
        entries() {
          (sed -e 's/^{//' -e 's/}$//' "$1" && echo) | tr ',' '\n' |
            sed -n 's/^"\([^"]*\)":"\([^"]*\)"$/\1 \2/p'
        }
        running=/run/current-system/switch-inhibitors
        new="$1/switch-inhibitors"
        changed=""
        if [ -f "$running" ] && [ -f "$new" ]; then
          changed="$(entries "$running" | while read -r name value; do
            now="$(entries "$new" | sed -n "s/^$name //p")"
            if [ -n "$now" ] && [ "$now" != "$value" ]; then
              echo "  $name: $value -> $now"
            fi
          done)"
        fi
        if [ -n "$changed" ]; then
          echo
          echo "switch inhibitors that differ from the running system's:"
          echo "$changed"
          echo "switching to this system now is refused; 'boot' makes it the boot"
          echo "default instead, to run after a reboot (NIXOS_NO_CHECK=1 skips the checks)"
          exit 1
        fi
        echo " done"
      '';
    }
    // (
      if has settings.failPreSwitchCheck
      then {
        labRefuses = ''
          echo "the lab's own pre-switch check refuses $1 ($2)"
          exit 1
        '';
      }
      else {}
    );
  preSwitchCheck = script "pre-switch-checks" (''
      #!/bin/sh
      export PATH=/usr/bin:/bin
    ''
    + builtins.concatStringsSep "" (map (name: ''
      # pre-switch check ${name}
      if ! (
      ${preSwitchChecks.${name}}
      ) >&2; then
        echo "Pre-switch check '${name}' failed" >&2
        exit 1
      fi
    '') (builtins.attrNames preSwitchChecks)));
  # The activation script (activation-script.nix): its snippets all run, a
  # failing one makes it exit 1 at the end, after it made the system
  # current.
  activate = ''
    #!/bin/sh
    systemConfig=@out@
    export PATH=/usr/sbin:/usr/bin:/sbin:/bin
    _status=0

    # Snippet etc: the system's units. NixOS links /etc/systemd/system to
    # the system's; a lab host's also holds the lab's own units, so the
    # running system's are removed and this one's copied.
    if [ -d /run/systemd/system ]; then
      new="$systemConfig/etc/systemd/system"
      if [ -e /run/current-system ]; then
        running="$(readlink -f /run/current-system)/etc/systemd/system"
        (cd "$running" && find . -mindepth 1 \( -type f -o -type l \)) | while read -r file; do
          if [ ! -e "$new/$file" ] && [ ! -L "$new/$file" ]; then
            rm -f "/etc/systemd/system/$file"
          fi
        done || _status=1
      fi
      cp -rP --remove-destination "$new/." /etc/systemd/system/ || _status=1
    fi

    # Snippet network: what NixOS's network units set up.
    if [ -n "${flag settings.breakNetwork}" ]; then
      echo "toy activation takes eth0 down" >&2
      ip link set eth0 down || _status=1
    else
      ip link set eth0 up || _status=1
    fi

    # Snippet lab: fails when the settings or the host say so.
    if [ -n "${flag settings.failSwitch}" ] || [ -e /var/lib/lab/fail-switch ]; then
      echo "toy activation of $systemConfig fails on purpose" >&2
      _status=1
    fi

    ln -sfn "$(readlink -f "$systemConfig")" /run/current-system
    exit $_status
  '';
  dryActivate = ''
    #!/bin/sh
    echo "would activate @out@"
  '';
  specialisations =
    if specialisation == null
    then settings.specialisations.${host} or []
    else [];
  child = name:
    (import ./toy-system.nix {
      inherit host settings;
      specialisation = name;
    })
    .toplevel;
in {
  deployd = {
    enable = deploydEnabled;
    settings = {
      hostname = host;
      trusted_keys = map (key: {inherit key;}) deployd.trustedKeys or [];
      nix = {
        substituters = deployd.substituters or [];
        trusted_public_keys = deployd.trustedPublicKeys or [];
      };
    };
  };
  toplevel =
    buildWith {
      inherit activate dryActivate;
    } "nixos-system-${host}-${settings.label}" ''
      if [ -n "${flag settings.failBuild}" ]; then
        echo "toy build of nixos-system-${host} fails on purpose" >&2
        exit 1
      fi
      /bin/mkdir -p $out/bin $out/specialisation
      echo "${settings.version}.lab-${settings.label}" > $out/nixos-version
      printf '%s' "${settings.platforms.${host} or system}" > $out/system
      printf '%s' "${
        if has settings.newInitInterface
        then "systemd 3"
        else "systemd 2"
      }" > $out/init-interface-version
      /bin/ln -s ${kernel}/bzImage $out/kernel
      /bin/ln -s ${initrd}/initrd $out/initrd
      /bin/ln -s ${kernelModules} $out/kernel-modules
      /bin/ln -s ${etc} $out/etc
      /bin/ln -s ${inhibitors} $out/switch-inhibitors
      ${builtins.concatStringsSep "\n" (map (name: "/bin/ln -s ${child name} $out/specialisation/${name}") specialisations)}
      echo "${builtins.concatStringsSep " " bulk}" > $out/bulk-paths
      printf '%s' "$activate" | /bin/sed "s|@out@|$out|g" > $out/activate
      printf '%s' "$dryActivate" | /bin/sed "s|@out@|$out|g" > $out/dry-activate
      /bin/chmod 0555 $out/activate $out/dry-activate
      /bin/ln -s ${switchProgram}/bin/switch-to-configuration $out/bin/.switch-to-configuration-wrapped
      /bin/cat > $out/bin/switch-to-configuration <<WRAPPER
      #! /bin/sh -e
      export OUT='$out'
      export TOPLEVEL='$out'
      export DISTRO_ID='nixos'
      export INSTALL_BOOTLOADER='${installBootLoader}/bin/install-boot-loader'
      export PRE_SWITCH_CHECK='${preSwitchCheck}/bin/pre-switch-checks'
      export LOCALE_ARCHIVE='/usr/lib/locale/locale-archive'
      export SYSTEMD='/usr'
      exec "$out/bin/.switch-to-configuration-wrapped"  "\$@"
      WRAPPER
      /bin/chmod 0555 $out/bin/switch-to-configuration
    '';
}
