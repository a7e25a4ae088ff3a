# What the modules do with their TOML settings (a function of `lib`, not a
# module): render them without the options left unset, and list every value
# with the setting that holds it, for the assertions about secrets.
{lib}: {
  # The TOML config: settings without the options left unset (TOML has no null).
  withoutNulls = let
    clean = value:
      if lib.isAttrs value
      then lib.mapAttrs (_: clean) (lib.filterAttrs (_: v: v != null) value)
      else if lib.isList value
      then map clean value
      else value;
  in
    clean;

  # Every value that is neither a table nor a list, as `{ name, key, value }`:
  # `name` is the setting's dotted path (list items by index), `key` the name
  # of the table key that holds it (a list's own key for its items).
  leaves = let
    walk = path: key: value:
      if lib.isAttrs value
      then lib.concatLists (lib.mapAttrsToList (name: walk (path ++ [name]) name) value)
      else if lib.isList value
      then lib.concatLists (lib.imap0 (index: walk (path ++ [(toString index)]) key) value)
      else [
        {
          name = lib.concatStringsSep "." path;
          inherit key value;
        }
      ];
  in
    walk [] "";
}
