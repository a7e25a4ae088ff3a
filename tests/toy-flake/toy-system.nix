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
{
  host,
  settings,
}: let
  inherit (settings) system;
  # Builds have no PATH; name every tool.
  build = name: script:
    derivation {
      inherit name system;
      builder = "/bin/sh";
      args = [
        "-c"
        script
      ];
    };
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
  etc = build "etc-${host}" ''
    /bin/mkdir -p $out
    echo ${host} > $out/hostname
    echo ${settings.label} > $out/label
    if [ -n "${settings.deploydExec}" ]; then
      /bin/mkdir -p $out/systemd/system
      echo "ExecStart=${settings.deploydExec} --config /var/lib/deployd.toml" > $out/systemd/system/deployd.service
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
in
  build "nixos-system-${host}-${settings.label}" ''
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
    case "\$action" in
      switch|boot|test|dry-activate) ;;
      *) echo "usage: \$0 switch|boot|test|dry-activate" >&2; exit 1 ;;
    esac
    mkdir -p /var/lib/lab
    echo "\$action $out" >> /var/lib/lab/switch.log
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
    SCRIPT
    /bin/chmod +x $out/bin/switch-to-configuration
  ''
