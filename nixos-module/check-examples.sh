#!/usr/bin/env bash
# Evaluates the module (nixos-module/eval.nix) for every example host in
# nixos-module/examples/ with nixpkgs' lib at LIB_PATH, prints the generated
# units and configs, checks each deployd config with the real `deployd
# check-config` and each forge service config with the real `push serve
# --check`, and checks that every assertion fires on its bad example
# (nixos-module/examples/bad/*.nix, whose first line names the expected message).
# It also checks that the daemon's unit reloads deployd when its config
# changes, and that each rendered config equals its fixture
# (nixos-module/examples/<host>.toml, and <host>-forge.toml for the forge
# service), which CI checks with check-config.
#
#   nixos-module/check-examples.sh /path/to/nixpkgs.lib/lib [path/to/deployd] [path/to/push]
#
# It only evaluates (nothing is built or copied into a store: the dummy
# store), so it also runs in a build sandbox: `nix flake check` runs it with
# the flake's nixpkgs and the built binaries (checks.module-examples).
set -euo pipefail
lib=${1:?usage: check-examples.sh LIB_PATH [DEPLOYD] [PUSH]}
deployd=${2:-target/debug/deployd}
push=${3:-target/debug/push}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

evaluate() {
  nix-instantiate --eval --strict --json --store dummy:// "$here/eval.nix" \
    --arg lib "import $lib" --arg host "$1"
}

for host in "$here"/examples/*.nix; do
  name=$(basename "$host" .nix)
  evaluate "$host" > "$work/$name.json"
  python3 - "$work/$name.json" "$work/$name.toml" "$work/$name-forge.toml" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
if result["failedAssertions"]:
    sys.exit("assertions failed: %s" % result["failedAssertions"])
unit = result["unit"]
if unit is not None:
    # A new config reloads deployd: switch-to-configuration reloads a unit
    # whose reload triggers alone changed, so the trigger names the checked
    # config, ExecStart only its /etc path, and ExecReload sends the signal.
    service = unit["serviceConfig"]
    if not service["ExecStart"].endswith(" --config /etc/deployd/config.toml"):
        sys.exit("ExecStart names a config other than /etc/deployd/config.toml: %s" % service["ExecStart"])
    if not service.get("ExecReload", "").endswith("/bin/kill -HUP $MAINPID"):
        sys.exit("ExecReload does not send SIGHUP to deployd: %s" % service.get("ExecReload"))
    if len(unit["reloadTriggers"]) != 1 or not unit["reloadTriggers"][0].endswith("-deployd-config"):
        sys.exit("the reload trigger is not the checked config: %s" % unit["reloadTriggers"])
for config, path in [(result["configToml"], sys.argv[2]), (result["forgeConfigToml"], sys.argv[3])]:
    if config is not None:
        open(path, "w").write(config)
print(json.dumps({key: result[key] for key in ["unit", "forgeUnit", "firewall", "etc"]}, indent=2))
PY
  if [ -e "$work/$name.toml" ]; then
    echo "--- $name: deployd.toml"
    cat "$work/$name.toml"
    "$deployd" check-config --skip-key-files --config "$work/$name.toml"
    # The fixture the docs show (and CI checks) is exactly what the module renders.
    diff -u "$here/examples/$name.toml" "$work/$name.toml"
  fi
  if [ -e "$work/$name-forge.toml" ]; then
    echo "--- $name: forge.toml"
    cat "$work/$name-forge.toml"
    "$push" serve --config "$work/$name-forge.toml" --check --skip-secret-files
    diff -u "$here/examples/$name-forge.toml" "$work/$name-forge.toml"
  fi
done

for bad in "$here"/examples/bad/*.nix; do
  expected=$(head -n 1 "$bad" | sed 's/^# expect: //')
  evaluate "$bad" > "$work/bad.json"
  if ! grep -qF -- "$expected" "$work/bad.json"; then
    echo "$(basename "$bad"): expected an assertion saying: $expected" >&2
    cat "$work/bad.json" >&2
    exit 1
  fi
  echo "$(basename "$bad"): fires: $expected"
done
