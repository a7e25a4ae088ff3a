#!/bin/sh
# The lab's stand-in for switch-to-configuration-ng, the program a NixOS
# system's `bin/switch-to-configuration` wrapper runs (nixpkgs:
# pkgs/by-name/sw/switch-to-configuration-ng/src/src/main.rs, `main` and
# `do_system_switch`). Like it, it is one program for every system: what it
# switches to comes from the wrapper's environment (OUT, TOPLEVEL,
# DISTRO_ID, PRE_SWITCH_CHECK, INSTALL_BOOTLOADER, LOCALE_ARCHIVE, SYSTEMD;
# nixos/modules/system/activation/switchable-system.nix).
#
# It follows the real one's order and exit statuses step by step; each step
# names what it follows. It talks to systemd through `systemctl` where the
# real one uses D-Bus, and leaves out what the lab's systems never need:
# see "What the stand-in does not do" in docs/src/hacking/lab.md.
#
# The lab's own hooks, which a real system has not: every run that gets past
# the pre-switch checks is recorded in /var/lib/lab/switch.log; it first
# sleeps as many seconds as /var/lib/lab/switch-delay says, then waits while
# /var/lib/lab/switch-gate exists, and when /var/lib/lab/switch-kills holds
# a pid, sends it SIGTERM (a restart of deployd in the middle of a switch).

# A toy system is built with /bin/sh alone: it runs this machine's tools.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

lab=/var/lib/lab
# main.rs: START_LIST_FILE, RESTART_LIST_FILE, RELOAD_LIST_FILE: what an
# interrupted switch still had to do, read back by the next one.
start_list=/run/nixos/start-list
restart_list=/run/nixos/restart-list
reload_list=/run/nixos/reload-list

# main.rs, `usage`: exit 1 before anything else.
usage() {
  cat >&2 <<EOF
Usage: switch-to-configuration [check|switch|boot|test|dry-activate]
check:        run pre-switch checks and exit
switch:       make the configuration the boot default and activate now
boot:         make the configuration the boot default
test:         activate the configuration, but don't make it the boot default
dry-activate: show what would be done if this configuration were activated
EOF
  exit 1
}

# main.rs, `main`: a known action, then root.
action="$1"
case "$action" in
  switch | boot | test | dry-activate | check) ;;
  *) usage ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "Error: switch-to-configuration must be run as the root user" >&2
  exit 1
fi

# do_system_switch: the wrapper's variables are required.
for variable in OUT TOPLEVEL DISTRO_ID PRE_SWITCH_CHECK INSTALL_BOOTLOADER LOCALE_ARCHIVE SYSTEMD; do
  if ! printenv "$variable" >/dev/null; then
    echo "Error: missing required environment variable \$$variable" >&2
    exit 1
  fi
done
export NIXOS_ACTION="$action"
systemctl="$SYSTEMD/bin/systemctl"

# do_system_switch: a NixOS installation has /etc/NIXOS or os-release's ID.
# The real one dies with the last errno, ENOENT from looking for /etc/NIXOS.
os_id="$(sed -n 's/^ID=//p' /etc/os-release 2>/dev/null)"
if [ ! -f /etc/NIXOS ] && [ "$os_id" != "$DISTRO_ID" ] && [ "$os_id" != "\"$DISTRO_ID\"" ]; then
  echo "This is not a NixOS installation!" >&2
  exit 2
fi

# do_system_switch: the lock, taken without waiting and held until the
# process ends; while another switch holds it, exit with EWOULDBLOCK (11),
# the errno the real one dies with.
mkdir -p /run/nixos
chmod 0755 /run/nixos
if ! exec 9>>/run/nixos/switch-to-configuration.lock; then
  echo "Could not open lock" >&2
  exit 1
fi
if ! flock --nonblock 9; then
  echo "Could not acquire lock" >&2
  exit 11
fi

# do_pre_switch_check: unless NIXOS_NO_CHECK=1, `$PRE_SWITCH_CHECK TOPLEVEL
# ACTION` (split on white space, as the real one splits it); `check` ends
# here.
if [ "$NIXOS_NO_CHECK" != 1 ]; then
  # shellcheck disable=SC2086
  if ! $PRE_SWITCH_CHECK "$TOPLEVEL" "$action"; then
    echo "Pre-switch checks failed" >&2
    exit 1
  fi
fi
if [ "$action" = check ]; then
  exit 0
fi

# The lab's record and hooks.
mkdir -p "$lab"
echo "$action $OUT" >>"$lab/switch.log"
echo "switching to $OUT ($action)"
if [ -e "$lab/switch-delay" ]; then
  sleep "$(cat "$lab/switch-delay")"
fi
while [ -e "$lab/switch-gate" ]; do
  sleep 0.1
done
if [ -e "$lab/switch-kills" ]; then
  kill -TERM "$(cat "$lab/switch-kills")"
  rm -f "$lab/switch-kills"
  sleep 1
fi

# do_install_bootloader: for switch and boot, `$INSTALL_BOOTLOADER
# TOPLEVEL`; `boot` ends here.
case "$action" in
  switch | boot)
    # shellcheck disable=SC2086
    if ! $INSTALL_BOOTLOADER "$TOPLEVEL"; then
      echo "Failed to install bootloader" >&2
      exit 1
    fi
    ;;
esac
if [ "$action" = boot ]; then
  echo "$OUT is the boot default (boot)"
  exit 0
fi

# do_system_switch: a new init interface takes effect at the next boot
# only: warn and exit 100, changing nothing more. (A lab host starts with no
# system at all, where a NixOS machine always runs one: with nothing to
# compare, there is no difference.)
if [ -e /run/current-system ]; then
  current_interface="$(cat /run/current-system/init-interface-version 2>/dev/null)"
  if ! new_interface="$(cat "$TOPLEVEL/init-interface-version")"; then
    echo "Error: File init-interface-version should exist" >&2
    exit 1
  fi
  if [ "$current_interface" != "$new_interface" ]; then
    cat >&2 <<EOF
Warning: the new NixOS configuration's init ($new_interface) is incompatible
with the running one's ($current_interface). The new configuration won't take
effect until you reboot the system.
EOF
    exit 100
  fi
fi

# Sets of units, one name a line, in a directory removed at the end.
sets="$(mktemp -d)"
trap 'rm -rf "$sets"' EXIT
for set in stop skip filter start restart reload; do
  : >"$sets/$set"
done
add() {
  grep -qxF -- "$2" "$sets/$1" || echo "$2" >>"$sets/$1"
}
has() {
  grep -qxF -- "$2" "$sets/$1"
}
drop() {
  grep -vxF -- "$2" "$sets/$1" >"$sets/$1.new"
  mv "$sets/$1.new" "$sets/$1"
}
# main.rs, `record_unit` and `unrecord_unit`: the lists survive an
# interruption; dry-activate writes none.
record() {
  if [ "$action" != dry-activate ]; then
    echo "$2" >>"$1"
  fi
}
unrecord() {
  if [ "$action" != dry-activate ] && [ -f "$1" ]; then
    grep -vxF -- "$2" "$1" >"$1.new"
    mv "$1.new" "$1"
  fi
}
# The set `$1`, sorted as the real one sorts (ignoring case), on one line:
# "a, b"; `shown` leaves out the units not shown (active targets, which
# every switch starts).
listed() {
  sort -f "$sets/$1" | paste -s -d, - | sed 's/,/, /g'
}
shown() {
  grep -vxF -f "$sets/filter" "$sets/$1" | sort -f | paste -s -d, - | sed 's/,/, /g'
}
# main.rs, `parse_systemd_bool`: the last `KEY=` in the unit file, or the
# default; true is 1, yes, true or on. (Sections and drop-ins are not told
# apart: the lab's units have none that would differ.)
unit_bool() {
  value="$(sed -n "s/^$2=//p" "$1" 2>/dev/null | tail -n 1)"
  case "${value:-$3}" in
    1 | yes | true | on) return 0 ;;
    *) return 1 ;;
  esac
}
# main.rs, `compare_units`: a unit whose only changes are [Unit] keys that
# do not matter to a running unit is equal; one whose only other change is
# X-Reload-Triggers needs a reload; any other change, a restart.
ignored_keys='^(Description|Documentation|OnFailure|OnSuccess|OnFailureJobMode|IgnoreOnIsolate|StopWhenUnneeded|RefuseManualStart|RefuseManualStop|AllowIsolate|CollectMode|SourcePath)='
compare_units() {
  grep -Ev "$ignored_keys" "$1" | grep -v '^X-Reload-Triggers=' >"$sets/old.unit"
  grep -Ev "$ignored_keys" "$2" | grep -v '^X-Reload-Triggers=' >"$sets/new.unit"
  if ! cmp -s "$sets/old.unit" "$sets/new.unit"; then
    echo restart
  elif [ "$(grep '^X-Reload-Triggers=' "$1")" != "$(grep '^X-Reload-Triggers=' "$2")" ]; then
    echo reload
  else
    echo equal
  fi
}
# main.rs, `handle_modified_unit`, for a unit that needs a restart.
handle_modified_unit() {
  unit="$1"
  file="$2"
  case "$unit" in
    sysinit.target | basic.target | multi-user.target | graphical.target | *.unit | *.slice) ;;
    -.mount | nix.mount)
      add reload "$unit"
      record "$reload_list" "$unit"
      ;;
    *.mount)
      add restart "$unit"
      record "$restart_list" "$unit"
      ;;
    *.socket) ;;
    *)
      if unit_bool "$file" X-ReloadIfChanged false && ! has restart "$unit" && ! has stop "$unit"; then
        add reload "$unit"
        record "$reload_list" "$unit"
      elif ! unit_bool "$file" X-RestartIfChanged true ||
        unit_bool "$file" RefuseManualStop false ||
        unit_bool "$file" X-OnlyManualStart false; then
        add skip "$unit"
      elif ! unit_bool "$file" X-StopIfChanged true || [ "${unit%.service}" = "$unit" ]; then
        add restart "$unit"
        record "$restart_list" "$unit"
        if has reload "$unit"; then
          drop reload "$unit"
          unrecord "$reload_list" "$unit"
        fi
      else
        # Stopped now, started after the activation (socket activation
        # left out: the lab's services have no sockets).
        add start "$unit"
        record "$start_list" "$unit"
        add stop "$unit"
        if has reload "$unit"; then
          drop reload "$unit"
          unrecord "$reload_list" "$unit"
        fi
      fi
      ;;
  esac
}
# main.rs, `get_active_units`: every unit that is not inactive, as
# "NAME ACTIVE SUB" lines (systemctl marks a failed unit with a bullet).
active_units() {
  "$systemctl" list-units --all --no-legend --plain --full --no-pager |
    sed -e 's/^● *//' -e 's/^\* *//' |
    awk '$3 != "inactive" { print $1, $3, $4 }'
}

systemd_runs=""
if [ -d /run/systemd/system ]; then
  systemd_runs=1
fi
new_units="$TOPLEVEL/etc/systemd/system"
# The running system's units. On NixOS, /etc/systemd/system is exactly
# those; a lab host's also holds the lab's own units (lab.target, the lab's
# deployd.service), which no system has, so only a unit the running system
# had counts as removed when the new one has it not.
running_units=""
if [ -e /run/current-system ]; then
  running_units="$(readlink -f /run/current-system)/etc/systemd/system"
fi

if [ -n "$systemd_runs" ]; then
  # do_system_switch: what an interrupted switch left to do comes first.
  for list in start:"$start_list" restart:"$restart_list" reload:"$reload_list"; do
    if [ -f "${list#*:}" ]; then
      grep -v '^$' "${list#*:}" | sort -u >"$sets/${list%%:*}"
    fi
  done

  # do_system_switch: every active unit of /etc/systemd/system: removed
  # ones stop, active targets start again, changed ones are handled.
  active_units >"$sets/active-before"
  while read -r unit state _; do
    case "$state" in
      active | activating) ;;
      *) continue ;;
    esac
    installed="/etc/systemd/system/$unit"
    [ -e "$installed" ] || continue
    new="$new_units/$unit"
    if [ ! -e "$new" ] || [ "$(readlink -f "$new")" = /dev/null ]; then
      if [ -n "$running_units" ] && [ -e "$running_units/$unit" ] &&
        unit_bool "$installed" X-StopOnRemoval true; then
        add stop "$unit"
      fi
    elif [ "${unit%.target}" != "$unit" ]; then
      case "$unit" in
        suspend.target | hibernate.target | hybrid-sleep.target) ;;
        *)
          if ! unit_bool "$new" RefuseManualStart false && ! unit_bool "$new" X-OnlyManualStart false; then
            add start "$unit"
            record "$start_list" "$unit"
            if [ "$STC_DISPLAY_ALL_UNITS" != 1 ]; then
              add filter "$unit"
            fi
          fi
          ;;
      esac
    else
      case "$(compare_units "$installed" "$new")" in
        restart) handle_modified_unit "$unit" "$new" ;;
        reload)
          if ! has restart "$unit"; then
            add reload "$unit"
            record "$reload_list" "$unit"
          fi
          ;;
      esac
    fi
  done <"$sets/active-before"
fi

# do_system_switch: dry-activate shows what it would do, runs the system's
# dry-activate script, and ends.
if [ "$action" = dry-activate ]; then
  if [ -s "$sets/stop" ]; then
    echo "would stop the following units: $(shown stop)" >&2
  fi
  if [ -s "$sets/skip" ]; then
    echo "would NOT stop the following changed units: $(listed skip)" >&2
  fi
  echo "would activate the configuration..." >&2
  "$OUT/dry-activate" "$OUT"
  if [ -s "$sets/reload" ]; then
    echo "would reload the following units: $(listed reload)" >&2
  fi
  if [ -s "$sets/restart" ]; then
    echo "would restart the following units: $(listed restart)" >&2
  fi
  if [ -n "$(shown start)" ]; then
    echo "would start the following units: $(shown start)" >&2
  fi
  exit 0
fi

# do_system_switch: stop what has to stop, and wait for it.
if [ -s "$sets/stop" ]; then
  if [ -n "$(shown stop)" ]; then
    echo "stopping the following units: $(shown stop)" >&2
  fi
  # shellcheck disable=SC2046
  "$systemctl" stop $(cat "$sets/stop") || true
fi
if [ -s "$sets/skip" ]; then
  echo "NOT restarting the following changed units: $(listed skip)" >&2
fi

# do_system_switch: activation. A failed activation script is reported and
# the switch goes on: exit status 2 at the end.
exit_code=0
echo "activating the configuration..." >&2
if [ -e "$OUT/activate" ] && ! "$OUT/activate" "$OUT"; then
  echo "Failed to run activate script" >&2
  exit_code=2
fi

if [ -n "$systemd_runs" ]; then
  # do_system_switch: forget every failed unit, whatever its system, and
  # make systemd read the units again.
  "$systemctl" reset-failed
  "$systemctl" daemon-reload

  # do_system_switch: a unit to reload that is no longer active is started
  # instead; then the reloads.
  while read -r unit; do
    if ! "$systemctl" is-active --quiet "$unit" </dev/null; then
      if ! unit_bool "$new_units/$unit" RefuseManualStart false || unit_bool "$new_units/$unit" X-OnlyManualStart false; then
        add start "$unit"
        record "$start_list" "$unit"
      fi
      drop reload "$unit"
      unrecord "$reload_list" "$unit"
    fi
  done <"$sets/reload"
  if [ -s "$sets/reload" ]; then
    echo "reloading the following units: $(listed reload)" >&2
    while read -r unit; do
      if ! "$systemctl" reload "$unit" </dev/null; then
        echo "Failed to reload $unit" >&2
        exit_code=4
      fi
    done <"$sets/reload"
    rm -f "$reload_list"
  fi

  # do_system_switch: restart what has to be restarted rather than stopped
  # and started.
  if [ -s "$sets/restart" ]; then
    echo "restarting the following units: $(listed restart)" >&2
    while read -r unit; do
      if ! "$systemctl" restart "$unit" </dev/null; then
        echo "Failed to restart $unit" >&2
        exit_code=4
      fi
    done <"$sets/restart"
    rm -f "$restart_list"
  fi

  # do_system_switch: start every active target (which starts what they
  # want, new units among them) and the changed units stopped above; each
  # `systemctl start` waits for its job, as the real one waits for the jobs
  # it submitted.
  if [ -n "$(shown start)" ]; then
    echo "starting the following units: $(shown start)" >&2
  fi
  while read -r unit; do
    if ! "$systemctl" start "$unit" </dev/null; then
      echo "Failed to start $unit" >&2
      exit_code=4
    fi
  done <"$sets/start"
  rm -f "$start_list"

  # do_system_switch: let systemd's events settle (the real one waits until
  # the bus has been quiet for 250 ms), then name the units that started
  # and those that failed: failed, or restarting after a failure.
  sleep 0.25
  active_units >"$sets/active-after"
  : >"$sets/failed"
  : >"$sets/new"
  while read -r unit state sub; do
    if [ "$state" = failed ]; then
      echo "$unit" >>"$sets/failed"
      continue
    fi
    if [ "$sub" = auto-restart ] && [ "${unit%.service}" != "$unit" ] &&
      [ "$("$systemctl" show -p ExecMainStatus --value "$unit" </dev/null)" != 0 ]; then
      echo "$unit" >>"$sets/failed"
      continue
    fi
    if [ "${unit%.scope}" = "$unit" ] && ! awk -v unit="$unit" '$1 == unit { found = 1 } END { exit !found }' "$sets/active-before"; then
      echo "$unit" >>"$sets/new"
    fi
  done <"$sets/active-after"
  if [ -s "$sets/new" ]; then
    echo "the following new units were started: $(listed new)" >&2
  fi
  if [ -s "$sets/failed" ]; then
    echo "warning: the following units failed: $(listed failed)" >&2
    # shellcheck disable=SC2046
    "$systemctl" status --no-pager --full $(cat "$sets/failed") >&2
    exit_code=4
  fi
fi

# The lab's record of an activation that succeeded (its units may not have).
if [ "$exit_code" != 2 ]; then
  echo "activated $OUT ($action)"
fi
exit "$exit_code"
