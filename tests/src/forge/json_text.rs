//! Edits JSON as text, so a hook body keeps the fixture's key order and
//! formatting byte for byte outside the values replaced. (`serde_json`
//! without `preserve_order` would sort the keys when re-serialising, and no
//! forge sends its keys sorted.)
//!
//! Only what the stand-in needs: strip whitespace between tokens (GitHub and
//! GitLab send compact JSON), and read or replace a value of the outermost
//! object or the elements of an array.

use anyhow::{bail, Context, Result};

/// The document without whitespace outside strings, as GitHub and GitLab
/// serialise their payloads.
pub(super) fn minify(document: &str) -> String {
    let mut out = String::with_capacity(document.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in document.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The raw text of the value under `key` in the outermost object of `object`.
pub(super) fn get<'a>(object: &'a str, key: &str) -> Result<&'a str> {
    let (start, end) = locate(object, key)?;
    Ok(&object[start..end])
}

/// `object` with the value under `key` (in its outermost object) replaced by
/// the raw JSON `value`.
pub(super) fn set(object: &str, key: &str, value: &str) -> Result<String> {
    let (start, end) = locate(object, key)?;
    Ok(format!("{}{value}{}", &object[..start], &object[end..]))
}

/// The raw texts of the elements of the JSON array `array`.
pub(super) fn elements(array: &str) -> Result<Vec<&str>> {
    let bytes = array.as_bytes();
    let open = array.find('[').context("not an array")?;
    let mut elements = Vec::new();
    let mut at = skip_space(bytes, open + 1);
    if bytes.get(at) == Some(&b']') {
        return Ok(elements);
    }
    loop {
        let end = value_end(bytes, at)?;
        elements.push(&array[at..end]);
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b']') => return Ok(elements),
            _ => bail!("malformed array at byte {at}"),
        }
    }
}

/// A JSON string literal holding `text`.
pub(super) fn string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// The byte range of the value under `key` in the outermost object.
fn locate(object: &str, key: &str) -> Result<(usize, usize)> {
    let bytes = object.as_bytes();
    let open = object.find('{').context("not an object")?;
    let mut at = skip_space(bytes, open + 1);
    while bytes.get(at) == Some(&b'"') {
        let key_end = value_end(bytes, at)?;
        let name: String = serde_json::from_str(&object[at..key_end])
            .with_context(|| format!("malformed key at byte {at}"))?;
        at = skip_space(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            bail!("no ':' after key {name:?}");
        }
        let start = skip_space(bytes, at + 1);
        let end = value_end(bytes, start)?;
        if name == key {
            return Ok((start, end));
        }
        at = skip_space(bytes, end);
        if bytes.get(at) == Some(&b',') {
            at = skip_space(bytes, at + 1);
        }
    }
    bail!("no key {key:?} in the object")
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// Where the value starting at `start` ends (exclusive).
fn value_end(bytes: &[u8], start: usize) -> Result<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut at = start;
    while let Some(&b) = bytes.get(at) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if depth == 0 {
                    return Ok(at + 1);
                }
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return Ok(at);
                    }
                    depth -= 1;
                    if depth == 0 {
                        return Ok(at + 1);
                    }
                }
                b',' if depth == 0 => return Ok(at),
                _ if depth == 0 && b.is_ascii_whitespace() => return Ok(at),
                _ => {}
            }
        }
        at += 1;
    }
    if depth == 0 && !in_string && at > start {
        return Ok(at);
    }
    bail!("value at byte {start} does not end")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = "{\n  \"ref\": \"refs/heads/main\",\n  \"nested\": {\"ref\": \"x\", \"list\": [1, {\"a\": \"]\"}]},\n  \"after\": \"abc\",\n  \"flag\": false,\n  \"commits\": [ {\"id\": \"1\"}, {\"id\": \"2\\\"\"} ]\n}";

    #[test]
    fn reads_and_replaces_only_top_level_values() {
        assert_eq!(get(DOCUMENT, "ref").expect("ref"), "\"refs/heads/main\"");
        assert_eq!(get(DOCUMENT, "flag").expect("flag"), "false");
        let edited = set(DOCUMENT, "ref", "\"refs/tags/v1\"").expect("set");
        assert_eq!(
            edited,
            DOCUMENT.replace("\"refs/heads/main\"", "\"refs/tags/v1\"")
        );
        let edited = set(&edited, "flag", "true").expect("set");
        assert!(edited.contains("\"nested\": {\"ref\": \"x\""), "{edited}");
        assert!(edited.contains("\"flag\": true,"), "{edited}");
        assert!(get(DOCUMENT, "missing").is_err());
        assert!(
            get(DOCUMENT, "id").is_err(),
            "nested keys are not top level"
        );
    }

    #[test]
    fn splits_arrays_and_minifies_outside_strings() {
        let commits = get(DOCUMENT, "commits").expect("commits");
        assert_eq!(
            elements(commits).expect("elements"),
            vec!["{\"id\": \"1\"}", "{\"id\": \"2\\\"\"}"]
        );
        assert!(elements("[]").expect("empty").is_empty());
        let minified = minify("{ \"a b\": [1, 2], \"c\": \"x \\\" y\" }\n");
        assert_eq!(minified, "{\"a b\":[1,2],\"c\":\"x \\\" y\"}");
        let parsed: serde_json::Value = serde_json::from_str(&minify(DOCUMENT)).expect("valid");
        assert_eq!(parsed["commits"][1]["id"], "2\"");
    }
}
