//! The query string of `:path` as a place credentials are read from: one
//! parameter's value, and the path without any spelling of credential parameters.
//! A parameter's name is read percent-decoded, as servers read it (`%40authtoken`
//! is `@authtoken`).

use std::borrow::Cow;

/// A credential name given more than once: which one counts would be a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repeated;

/// The raw (still percent-encoded) value of parameter `name` in the query of `path`,
/// if present under that name, encoded or not; `Err` when present more than once.
pub(crate) fn raw_value<'p>(path: &'p str, name: &str) -> Result<Option<&'p str>, Repeated> {
    let Some((_, query)) = path.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or("");
    let mut found = None;
    for pair in query.split('&') {
        let (pair_name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if param_name(pair_name) == name {
            if found.is_some() {
                return Err(Repeated);
            }
            found = Some(value);
        }
    }
    Ok(found)
}

/// `path` without any spelling of `names` that a lenient parser could read as one of
/// them (percent-encoded, another case, PHP's `.`/space-for-`_` and `name[]`), keeping
/// the first exact occurrence of each of `keep`. None when nothing changes.
pub(crate) fn without_params(path: &str, names: &[&str], keep: &[&str]) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    let pairs = query.split('&').map(|pair| (param_name(pair.split_once('=').map_or(pair, |(name, _)| name)), pair));
    let kept = without_spellings(pairs, names, keep)?;
    Some(if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) })
}

/// Of `pieces` (a name as its reader reads it, and the text it stands in), those that
/// are no spelling of `names` (`lenient_name`), and the first exact occurrence of each
/// of `keep`. None when none is dropped.
pub(crate) fn without_spellings<'p>(
    pieces: impl Iterator<Item = (Cow<'p, str>, &'p str)>,
    names: &[&str],
    keep: &[&str],
) -> Option<Vec<&'p str>> {
    let wanted: Vec<String> = names.iter().map(|name| lenient_name(name)).collect();
    let mut kept_exact: Vec<Cow<str>> = Vec::new();
    let mut dropped = false;
    let mut kept = Vec::new();
    for (name, piece) in pieces {
        if !wanted.contains(&lenient_name(&name)) {
            kept.push(piece);
        } else if keep.contains(&name.as_ref()) && !kept_exact.contains(&name) {
            kept_exact.push(name);
            kept.push(piece);
        } else {
            dropped = true;
        }
    }
    dropped.then_some(kept)
}

/// A parameter's name as servers read it: percent-decoded (left as it is when it is
/// not well encoded, which no configured name is).
fn param_name(raw: &str) -> Cow<'_, str> {
    match raw.contains('%') {
        true => percent_decode(raw).map_or(Cow::Borrowed(raw), Cow::Owned),
        false => Cow::Borrowed(raw),
    }
}

/// A parameter (or cookie) name as the most lenient parsers read it: PHP
/// percent-decodes names, reads `.` and space as `_`, and `name[...]` as `name`;
/// others ignore case.
pub(crate) fn lenient_name(name: &str) -> String {
    let decoded = percent_decode(name).unwrap_or_else(|| name.to_string());
    let base = decoded.split('[').next().unwrap_or("");
    base.chars().map(|c| if c == '.' || c == ' ' { '_' } else { c.to_ascii_lowercase() }).collect()
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space); None when not UTF-8 or badly escaped.
pub(crate) fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(escaped_byte(bytes, i)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The byte of the escape `%XY` at `bytes[at]`: two hex digits exactly (no sign,
/// no space: `u8::from_str_radix` would read `%+1` as 0x01). The one reader of
/// escapes for queries, forms and paths.
pub(crate) fn escaped_byte(bytes: &[u8], at: usize) -> Option<u8> {
    let digit = |offset: usize| bytes.get(at + offset).and_then(|b| char::from(*b).to_digit(16));
    let (high, low) = (digit(1)?, digit(2)?);
    u8::try_from(high << 4 | low).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_raw() {
        assert_eq!(raw_value("/x?a=1&api_key=k%2B1&b=2", "api_key"), Ok(Some("k%2B1")));
        assert_eq!(raw_value("/x?api_key", "api_key"), Ok(Some("")));
        assert_eq!(raw_value("/x?API_KEY=k", "api_key"), Ok(None));
        assert_eq!(raw_value("/x", "api_key"), Ok(None));
        assert_eq!(raw_value("/x?api_key=a&api_key=b", "api_key"), Err(Repeated));
    }

    #[test]
    fn names_are_read_percent_decoded() {
        assert_eq!(raw_value("/x?%40authtoken=k%2B1", "@authtoken"), Ok(Some("k%2B1")));
        assert_eq!(raw_value("/x?@authtoken=k", "@authtoken"), Ok(Some("k")));
        assert_eq!(raw_value("/x?%40AUTHTOKEN=k", "@authtoken"), Ok(None));
        assert_eq!(raw_value("/x?api%5Fkey=k", "api_key"), Ok(Some("k")));
        assert_eq!(raw_value("/x?api_key=a&api%5fkey=b", "api_key"), Err(Repeated));
        assert_eq!(raw_value("/x?@authtoken=a&%40authtoken=b", "@authtoken"), Err(Repeated));
        assert_eq!(raw_value("/x?%zzkey=k", "api_key"), Ok(None));
        let removed = without_params("/x?%40authtoken=K&@AuthToken=D&%40authtoken[]=D&a=1", &["@authtoken"], &[]);
        assert_eq!(removed.as_deref(), Some("/x?a=1"));
        // The occurrence kept is the one read, however it was encoded.
        let kept = without_params("/x?@AUTHTOKEN=D&%40authtoken=K&a=1", &["@authtoken"], &["@authtoken"]);
        assert_eq!(kept.as_deref(), Some("/x?%40authtoken=K&a=1"));
    }

    #[test]
    fn removes_only_the_key_param() {
        let remove = |path| without_params(path, &["api_key"], &[]);
        assert_eq!(remove("/x?a=1&api_key=k&b=2").as_deref(), Some("/x?a=1&b=2"));
        assert_eq!(remove("/x?api_key=k").as_deref(), Some("/x"));
        assert_eq!(remove("/x?a=1"), None);
        assert_eq!(remove("/x"), None);
    }

    #[test]
    fn removes_every_spelling_a_lenient_parser_reads() {
        let path = "/x?api_key=K&api%5Fkey=D&API_KEY=D&api.key=D&api+key=D&api_key[]=D&api_keys=ok&a=1";
        let removed = without_params(path, &["api_key"], &[]);
        assert_eq!(removed.as_deref(), Some("/x?api_keys=ok&a=1"));
        let kept = without_params(path, &["api_key"], &["api_key"]);
        assert_eq!(kept.as_deref(), Some("/x?api_key=K&api_keys=ok&a=1"));
    }

    #[test]
    fn removes_several_names_at_once() {
        let path = "/x?token=T&Token=D&api_key=K&api_key=D2&keep=1";
        let removed = without_params(path, &["api_key", "token"], &["token"]);
        assert_eq!(removed.as_deref(), Some("/x?token=T&keep=1"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%"), None);
        // Two hex digits exactly: a sign is not one.
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%-1"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
