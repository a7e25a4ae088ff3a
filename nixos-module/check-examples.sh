#!/usr/bin/env bash
# Evaluates the module (nixos-module/eval.nix) for every example host in
# nixos-module/examples/ with nixpkgs' lib at LIB_PATH, prints the generated
# unit and config, checks each config with the real `deployd check-config`,
# and checks that every assertion fires on its bad example
# (nixos-module/examples/bad/*.nix, whose first line names the expected message).
# It also checks that each rendered config equals its fixture
# (nixos-module/examples/<host>.toml), which CI checks with check-config.
#
#   nixos-module/check-examples.sh /path/to/nixpkgs.lib/lib [path/to/deployd]
set -euo pipefail
lib=${1:?usage: check-examples.sh LIB_PATH [DEPLOYD]}
deployd=${2:-target/debug/deployd}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

evaluate() {
  nix-instantiate --eval --strict --json "$here/eval.nix" \
    --arg lib "import $lib" --arg host "$1"
}

for host in "$here"/examples/*.nix; do
  name=$(basename "$host" .nix)
  evaluate "$host" > "$work/$name.json"
  python3 - "$work/$name.json" "$work/$name.toml" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
if result["failedAssertions"]:
    sys.exit("assertions failed: %s" % result["failedAssertions"])
open(sys.argv[2], "w").write(result["configToml"])
print(json.dumps({"unit": result["unit"], "firewall": result["firewall"], "etc": result["etc"]}, indent=2))
PY
  echo "--- $name: deployd.toml"
  cat "$work/$name.toml"
  "$deployd" check-config --skip-key-files --config "$work/$name.toml"
  # The fixture the README shows (and CI checks) is exactly what the module renders.
  diff -u "$here/examples/$name.toml" "$work/$name.toml"
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
