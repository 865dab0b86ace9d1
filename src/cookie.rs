//! The `Cookie` header as a place credentials are read from (RFC 6265:
//! `name=value; name2=value2`, in one header or in several, as HTTP/2 may split
//! it): one cookie's value, and the header without any spelling of credential
//! cookies, every other cookie left as it was.

use std::borrow::Cow;

use crate::query::{without_spellings, Repeated};
use crate::request::RequestFacts;

/// The value of cookie `name` (matched exactly: RFC 6265 names are case-sensitive),
/// without the double quotes RFC 6265 allows around it, if present; `Err` when the
/// request sends it more than once.
pub(crate) fn value<'r>(request: &'r RequestFacts, name: &str) -> Result<Option<&'r str>, Repeated> {
    let mut found = None;
    for (pair_name, value) in pairs(request) {
        if pair_name == name {
            if found.is_some() {
                return Err(Repeated);
            }
            found = Some(unquoted(value));
        }
    }
    Ok(found)
}

/// The `Cookie` value without any spelling of `names` a lenient parser could read as
/// one of them (the spellings of `query::lenient_name`), keeping the first exact
/// occurrence of each of `keep`; every Cookie header of the request joined into
/// one. None when nothing changes; `Some("")` when no cookie is left.
pub(crate) fn without_cookies(request: &RequestFacts, names: &[&str], keep: &[&str]) -> Option<String> {
    // Cookie names are read as they are (RFC 6265), never decoded.
    let pairs = raw_pairs(request).map(|pair| (Cow::Borrowed(split(pair).0), pair));
    without_spellings(pairs, names, keep).map(|kept| kept.join("; "))
}

/// Every cookie pair of every Cookie header, trimmed, empty ones skipped.
fn raw_pairs<'r>(request: &'r RequestFacts) -> impl Iterator<Item = &'r str> {
    request
        .header_values("cookie")
        .flat_map(|value| value.split(';'))
        .map(|pair| pair.trim_matches([' ', '\t']))
        .filter(|pair| !pair.is_empty())
}

fn pairs<'r>(request: &'r RequestFacts) -> impl Iterator<Item = (&'r str, &'r str)> {
    raw_pairs(request).map(split)
}

/// `name=value`; a pair without `=` is a value without a name, as browsers read it (RFC 6265bis 5.6).
fn split(pair: &str) -> (&str, &str) {
    match pair.split_once('=') {
        Some((name, value)) => (name.trim_end_matches([' ', '\t']), value.trim_start_matches([' ', '\t'])),
        None => ("", pair),
    }
}

fn unquoted(value: &str) -> &str {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Header;

    fn request_with<'a>(cookies: &[&'a str]) -> Vec<Header<'a>> {
        cookies.iter().map(|&c| ("cookie".into(), c.into())).collect()
    }

    fn read(cookies: &[&str], name: &str) -> Result<Option<String>, Repeated> {
        let headers = request_with(cookies);
        value(&RequestFacts::new("GET", "/", &headers), name).map(|found| found.map(String::from))
    }

    fn remove(cookies: &[&str], names: &[&str], keep: &[&str]) -> Option<String> {
        let headers = request_with(cookies);
        without_cookies(&RequestFacts::new("GET", "/", &headers), names, keep)
    }

    #[test]
    fn reads_one_cookie_exactly() {
        let cookies = ["theme=dark; session=abc.def.ghi", "lang=en"];
        assert_eq!(read(&cookies, "session"), Ok(Some("abc.def.ghi".into())));
        assert_eq!(read(&cookies, "lang"), Ok(Some("en".into())));
        assert_eq!(read(&cookies, "Session"), Ok(None));
        assert_eq!(read(&["session=\"quoted\""], "session"), Ok(Some("quoted".into())));
        assert_eq!(read(&["session"], "session"), Ok(None));
        assert_eq!(read(&[], "session"), Ok(None));
    }

    #[test]
    fn a_cookie_sent_twice_is_repeated() {
        assert_eq!(read(&["session=a; session=b"], "session"), Err(Repeated));
        assert_eq!(read(&["session=a", "session=a"], "session"), Err(Repeated));
    }

    #[test]
    fn removes_every_spelling_and_nothing_else() {
        let cookies = ["a=1; session=T; Session=D; session%5F=x; sess.ion=y", "session[]=D; b=2;  session = D "];
        let removed = remove(&cookies, &["session", "sess_ion"], &[]);
        assert_eq!(removed.as_deref(), Some("a=1; session%5F=x; b=2"));
        let kept = remove(&cookies, &["session"], &["session"]);
        assert_eq!(kept.as_deref(), Some("a=1; session=T; session%5F=x; sess.ion=y; b=2"));
        assert_eq!(remove(&["session=T"], &["session"], &[]).as_deref(), Some(""));
        assert_eq!(remove(&["a=1; b=2"], &["session"], &[]), None);
    }
}
