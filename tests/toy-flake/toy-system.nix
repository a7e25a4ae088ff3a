# A toy NixOS system: a faithful stand-in for a real `toplevel`, built with
# /bin/sh alone (there is no nixpkgs in the lab).
#
# It has what deployd looks at: `nixos-version`, `bin/switch-to-configuration`,
# and `kernel`, `initrd` and `kernel-modules` links (for reboot detection),
# plus dependencies in its closure. Its build fails when the settings say so.
# Its switch-to-configuration records every action it runs on the host in
# /var/lib/lab/switch.log, fails when the settings say so or when
# /var/lib/lab/fail-switch exists on the host, and first sleeps as many
# seconds as /var/lib/lab/switch-delay says, if it exists, then waits while
# /var/lib/lab/switch-gate exists; when /var/lib/lab/switch-kills holds a
# pid, it sends it SIGTERM mid-switch. Like NixOS's network setup, `switch`
# and `test` bring eth0 up, except for a system built to break the network,
# which takes it down.
#
# The hosts the settings' `deployd.hosts` name enable deployd as the NixOS
# module does (`services.deployd`, which the flake shows): their system
# carries `deployd.service`, running the given deployd with a config of
# its own in the store, and an etc/nix.conf that trusts the same caches.
# A host's `hosts/HOST/hardware-configuration.nix`, when the flake has one,
# is imported as NixOS imports it; its file systems go to etc/fstab.
#
# A system carries unit files in etc/systemd/system: `lab-app.service`
# (which changes with the label), `lab-broken.service` when the settings say
# the host's system has a service that fails, and `deployd.service` when they
# give one. Where systemd runs, `switch` and `test` handle them as NixOS's
# switch-to-configuration does: stop and remove the units the old system had
# and this one has not, install this one's, `systemctl reset-failed` (every
# unit's failure is forgotten, whatever its system) and `daemon-reload`,
# start the new units and restart the changed ones, except those marked
# `X-RestartIfChanged=false` (deployd); a unit that fails to start or
# restart makes it exit 4. (NixOS's also restarts the active targets and
# exits 4 when any unit is failed once its jobs have ended; the toy systems
# carry no target, and a unit that fails after it started is left to the
# health checks.)
{
  host,
  settings,
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
  appUnit = ''
    [Unit]
    Description=lab application of ${host}, label ${settings.label}

    [Service]
    Type=oneshot
    RemainAfterExit=yes
    ExecStart=/bin/sh -c "echo lab-app of ${host} runs label ${settings.label}"
  '';
  brokenUnit = ''
    [Unit]
    Description=a service of ${host} that fails on purpose

    [Service]
    Type=simple
    ExecStart=/bin/sh -c "echo lab-broken fails on purpose; exit 3"
  '';
  deployd = settings.deployd or {hosts = [];};
  deploydEnabled = has deployd.hosts;
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
  etc =
    buildWith {
      inherit appUnit brokenUnit fstab;
      deploydUnit =
        if deploydEnabled
        then builtins.replaceStrings ["@deploydConfig@"] ["${deploydConfig}"] deployd.unit
        else settings.deploydUnit;
      nixConf =
        if deploydEnabled
        then "sandbox = false\nbuild-users-group =\nsubstituters = ${toString deployd.substituters}\ntrusted-public-keys = ${toString deployd.trustedPublicKeys}\nrequire-sigs = true\n"
        else "";
      broken =
        if has settings.failUnit
        then "1"
        else "";
    } "etc-${host}" ''
      /bin/mkdir -p $out/systemd/system
      echo ${host} > $out/hostname
      echo ${settings.label} > $out/label
      printf '%s' "$appUnit" > $out/systemd/system/lab-app.service
      if [ -n "$broken" ]; then
        printf '%s' "$brokenUnit" > $out/systemd/system/lab-broken.service
      fi
      if [ -n "$deploydUnit" ]; then
        printf '%s' "$deploydUnit" > $out/systemd/system/deployd.service
      fi
      if [ -n "$nixConf" ]; then
        printf '%s' "$nixConf" > $out/nix.conf
      fi
      if [ -n "$fstab" ]; then
        printf '%s' "$fstab" > $out/fstab
      fi
    '';
  bulkPath = index:
    build "bulk-${toString index}" ''
      /usr/bin/head -c ${toString settings.bulk.bytesPerPath} /dev/urandom > $out
    '';
  bulk = builtins.genList bulkPath settings.bulk.paths;
  failSwitch =
    if has settings.failSwitch
    then "1"
    else "";
  failBuild =
    if has settings.failBuild
    then "1"
    else "";
  breakNetwork =
    if has settings.breakNetwork
    then "1"
    else "";
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
  toplevel = build "nixos-system-${host}-${settings.label}" ''
    if [ -n "${failBuild}" ]; then
      echo "toy build of nixos-system-${host} fails on purpose" >&2
      exit 1
    fi
    /bin/mkdir -p $out/bin
    echo "${settings.version}.lab-${settings.label}" > $out/nixos-version
    /bin/ln -s ${kernel}/bzImage $out/kernel
    /bin/ln -s ${initrd}/initrd $out/initrd
    /bin/ln -s ${kernelModules} $out/kernel-modules
    /bin/ln -s ${etc} $out/etc
    echo "${builtins.concatStringsSep " " bulk}" > $out/bulk-paths
    /bin/cat > $out/bin/switch-to-configuration <<SCRIPT
    #!/bin/sh
    # Toy switch-to-configuration of the deployd lab.
    export PATH=/usr/sbin:/usr/bin:/sbin:/bin
    action="\$1"
    units() {
      [ -d /run/systemd/system ] || return 0
      new=$out/etc/systemd/system
      old="\$(readlink -f /run/current-system)/etc/systemd/system"
      for file in "\$old"/*; do
        [ -e "\$file" ] || continue
        unit="\$(basename "\$file")"
        if [ ! -e "\$new/\$unit" ]; then
          echo "stopping the following units: \$unit"
          systemctl stop "\$unit"
          rm -f "/etc/systemd/system/\$unit"
        fi
      done
      added=""
      changed=""
      for file in "\$new"/*; do
        unit="\$(basename "\$file")"
        installed="/etc/systemd/system/\$unit"
        if [ ! -e "\$installed" ]; then
          added="\$added \$unit"
        elif ! cmp -s "\$file" "\$installed" && ! grep -qx X-RestartIfChanged=false "\$file"; then
          changed="\$changed \$unit"
        fi
        cp "\$file" "\$installed"
      done
      # As NixOS's: forget every failed unit, then reload.
      systemctl reset-failed
      systemctl daemon-reload
      failed=""
      for unit in \$added; do
        echo "starting the following units: \$unit"
        systemctl start "\$unit" || failed="\$failed \$unit"
      done
      for unit in \$changed; do
        echo "restarting the following units: \$unit"
        systemctl restart "\$unit" || failed="\$failed \$unit"
      done
      if [ -n "\$failed" ]; then
        echo "warning: the following units failed:\$failed" >&2
        for unit in \$failed; do
          systemctl status --no-pager --lines=10 "\$unit" >&2
        done
        return 4
      fi
    }
    units_status=0
    case "\$action" in
      switch|boot|test|dry-activate) ;;
      *) echo "usage: \$0 switch|boot|test|dry-activate" >&2; exit 1 ;;
    esac
    mkdir -p /var/lib/lab
    echo "\$action $out" >> /var/lib/lab/switch.log
    echo "switching to $out (\$action)"
    if [ -e /var/lib/lab/switch-delay ]; then
      sleep "\$(cat /var/lib/lab/switch-delay)"
    fi
    while [ -e /var/lib/lab/switch-gate ]; do
      sleep 0.1
    done
    if [ -e /var/lib/lab/switch-kills ]; then
      # Restarts deployd in the middle of the switch, as a changed unit would.
      kill -TERM "\$(cat /var/lib/lab/switch-kills)"
      rm -f /var/lib/lab/switch-kills
      sleep 1
    fi
    if [ "\$action" = dry-activate ]; then
      echo "would activate $out"
      exit 0
    fi
    if [ -n "${failSwitch}" ] || [ -e /var/lib/lab/fail-switch ]; then
      echo "toy switch of $out fails on purpose" >&2
      exit 1
    fi
    case "\$action" in
      switch|boot) ln -sfn $out /var/lib/lab/boot-default ;;
    esac
    case "\$action" in
      switch|test)
        units
        units_status=\$?
        ln -sfn $out /run/current-system
        if [ -n "${breakNetwork}" ]; then
          echo "toy switch takes eth0 down" >&2
          ip link set eth0 down
        else
          ip link set eth0 up
        fi
        ;;
    esac
    echo "activated $out (\$action)"
    exit "\$units_status"
    SCRIPT
    /bin/chmod +x $out/bin/switch-to-configuration
  '';
}
