# The NixOS module's options, for the book's reference page
# (docs/src/reference/module-options.md), read without nixpkgs (which the
# tests cannot fetch):
#   nix-instantiate --eval --strict --json tests/module-options.nix \
#     --arg module ./nixos-module/default.nix
# returns one object per documented option, sorted by name: `name`, `type`
# (the type's description), `default` and `example` (as Nix text, or null),
# `description`, `readOnly` and `declaredIn` (the module file's name).
#
# Its `lib` is a stand-in for the parts of nixpkgs' `lib` that the module's
# option declarations use, written after nixpkgs' own files:
# - `lib/options.nix`: `mkOption` (an attribute set of `_type = "option"`),
#   `mkEnableOption` (a boolean, default false, example true, described
#   "Whether to enable NAME."), `literalExpression`;
# - `lib/types.nix`: the types' `description`s, with the parentheses that
#   `optionDescriptionPhrase` adds by `descriptionClass`, for `str`, `bool`,
#   `int`, `ints.positive`, `ints.u16`/`port`, `package`, `path`, `attrs`,
#   `anything`, `unspecified`, `listOf`, `attrsOf`, `nullOr`, `enum`,
#   `either`, `oneOf` and `submodule` (described by its free-form type, as
#   there); sub-options are named as nixpkgs' option docs name them
#   (`*` for a list's items, `<name>` for an attribute set's);
# - `pkgs/pkgs-lib/formats.nix`: `formats.toml`'s type ("TOML value").
# The rest of `lib` (`importJSON`, string and list functions) is what
# builtins already do.
#
# What it does not do: no module system. Modules are called once with a
# `config` that throws (so an option whose default reads the config must
# say `defaultText`, as nixpkgs' manual build requires too), and their
# `options` and `imports` are walked; nothing is merged, no type checks a
# value, `mkIf`/`mkDefault` and friends are not available, and internal or
# invisible options are left out as nixpkgs' docs leave them out.
{module}: let
  option = attributes: attributes // {_type = "option";};
  # `optionDescriptionPhrase`: the type's description, in parentheses
  # unless its class fits where it goes.
  phrase = fits: type:
    if builtins.elem (type.descriptionClass or null) fits
    then type.description
    else "(${type.description})";
  # A type: its description and class, and where its sub-options are.
  type = attributes:
    {
      descriptionClass = null;
      modules = [];
      suffix = [];
    }
    // attributes;
  noun = description:
    type {
      inherit description;
      descriptionClass = "noun";
    };
  unsigned = bits: let
    highest = toString (builtins.foldl' (product: _: product * 2) 1 (builtins.genList (x: x) bits) - 1);
  in
    type {
      description = "${toString bits} bit unsigned integer; between 0 and ${highest} (both inclusive)";
    };
  submoduleOf = modules: let
    evaluated = map (m: applied m "‹name›") modules;
    freeform = builtins.filter (m: m ? freeformType) evaluated;
  in
    type {
      description =
        if freeform != []
        then (builtins.head freeform).freeformType.description
        else "submodule";
      inherit modules;
    };
  types = rec {
    str = noun "string";
    bool = noun "boolean";
    int = noun "signed integer";
    path = noun "path";
    package = noun "package";
    anything = noun "anything";
    unspecified = noun "unspecified value";
    attrs = type {description = "attribute set";};
    ints = {
      positive = type {
        description = "positive integer, meaning >0";
        descriptionClass = "nonRestrictiveClause";
      };
      unsigned = type {
        description = "unsigned integer, meaning >=0";
        descriptionClass = "nonRestrictiveClause";
      };
      u16 = unsigned 16;
    };
    port = ints.u16;
    listOf = element:
      type {
        description = "list of ${phrase ["noun" "composite"] element}";
        descriptionClass = "composite";
        inherit (element) modules;
        suffix = ["*"] ++ element.suffix;
      };
    attrsOf = element:
      type {
        description = "attribute set of ${phrase ["noun" "composite"] element}";
        descriptionClass = "composite";
        inherit (element) modules;
        suffix = ["<name>"] ++ element.suffix;
      };
    nullOr = element:
      type {
        description = "null or ${phrase ["noun" "conjunction"] element}";
        descriptionClass = "conjunction";
        inherit (element) modules suffix;
      };
    enum = values: let
      show = value:
        if builtins.isString value
        then "\"${value}\""
        else toString value;
    in
      type {
        description = "one of ${builtins.concatStringsSep ", " (map show values)}";
        descriptionClass = "conjunction";
      };
    either = left: right:
      type {
        description =
          if left.descriptionClass == "nonRestrictiveClause"
          then "${left.description}, or ${phrase ["noun" "conjunction"] right}"
          else "${phrase ["noun" "conjunction"] left} or ${phrase ["noun" "conjunction" "composite"] right}";
        descriptionClass = "conjunction";
      };
    oneOf = alternatives: builtins.foldl' either (builtins.head alternatives) (builtins.tail alternatives);
    submodule = module: submoduleOf [module];
  };
  lib = {
    inherit types;
    mkOption = option;
    mkEnableOption = name:
      option {
        type = types.bool;
        default = false;
        example = true;
        description = "Whether to enable ${name}.";
      };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    importJSON = file: builtins.fromJSON (builtins.readFile file);
  };
  pkgs.formats.toml = {}: {
    type = types.attrs // {description = "TOML value";};
    generate = throw "module-options.nix: nothing is rendered";
  };
  config = throw "module-options.nix: an option's default reads `config`: give it a `defaultText`";

  # A module applied to its arguments (a submodule gets `name`).
  applied = module: name:
    if builtins.isFunction module
    then module {inherit config lib pkgs name;}
    else module;

  # Nix text for a value, on one line.
  show = value:
    if value == null
    then "null"
    else if builtins.isBool value
    then
      (
        if value
        then "true"
        else "false"
      )
    else if builtins.isString value
    then builtins.toJSON value
    else if builtins.isList value
    then
      (
        if value == []
        then "[ ]"
        else "[ ${builtins.concatStringsSep " " (map show value)} ]"
      )
    else if builtins.isAttrs value
    then
      (
        if value == {}
        then "{ }"
        else "{ ${builtins.concatStringsSep " " (map (name: "${name} = ${show value.${name}};") (builtins.attrNames value))} }"
      )
    else toString value;
  text = value:
    if builtins.isAttrs value && (value._type or null) == "literalExpression"
    then value.text
    else show value;

  # Every documented option under `prefix` in `declarations`.
  walk = file: prefix: declarations:
    builtins.concatLists (map (name: let
      value = declarations.${name};
      at = prefix ++ [name];
    in
      if (value._type or null) == "option"
      then documented file at value
      else if builtins.isAttrs value
      then walk file at value
      else []) (builtins.attrNames declarations));
  documented = file: at: declared: let
    hidden = (declared.internal or false) || !(declared.visible or true);
    optionType = declared.type or types.unspecified;
    inner = at ++ optionType.suffix;
  in
    if hidden
    then []
    else
      [
        {
          name = builtins.concatStringsSep "." at;
          type = optionType.description;
          default =
            if declared ? defaultText
            then text declared.defaultText
            else if declared ? default
            then show declared.default
            else null;
          example =
            if declared ? example
            then text declared.example
            else null;
          description = declared.description or "";
          readOnly = declared.readOnly or false;
          declaredIn = baseNameOf file;
        }
      ]
      ++ builtins.concatLists (map (sub: walk file inner ((applied sub "‹name›").options or {})) optionType.modules);

  # A module file and the files it imports.
  files = file: let
    evaluated = applied (import file) null;
  in
    [
      {
        inherit file;
        options = evaluated.options or {};
      }
    ]
    ++ builtins.concatLists (map files (evaluated.imports or []));

  options = builtins.concatLists (map (entry: walk entry.file [] entry.options) (files module));
in
  builtins.sort (a: b: a.name < b.name) options
