//! Request paths as rules see them. A rule must not be escapable, whatever
//! Envoy's own path settings: rules match the path after RFC 3986 section 6.2.2
//! normalization (dot segments resolved, percent-encoded unreserved characters
//! decoded), with duplicate slashes merged and `;` parameters removed from every
//! segment (as servlet containers read paths), and prefixes end at a segment boundary.

/// A request path, normalized for matching. Never sent upstream: Envoy forwards the path it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchPath {
    /// The normalized path, without query or fragment; always starts with '/'.
    pub path: String,
    /// The path has an encoded slash or backslash (`%2F`, `%5C`) or a literal
    /// backslash: upstreams disagree on where its segments end. It is matched as
    /// if each were a '/', and never matches a rule that relaxes authentication.
    pub ambiguous: bool,
    /// A segment is `..` or `.` with parameters (`..;`, `.;x=1`, however encoded): a dot
    /// segment to servlet containers (Tomcat, Jetty, Spring drop parameters, then resolve
    /// dots), a plain name to Envoy and RFC 3986. Matched as the servlet reads it (the
    /// dot segment resolved), ambiguous, and refused wherever a rule or privilege reads it.
    pub hidden_dot_segment: bool,
}

/// Normalize a `:path` value (origin form, or absolute form `http://host/path`).
pub fn normalize(raw: &str) -> MatchPath {
    let path = strip_absolute_form(raw);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut ambiguous = false;
    let mut has_parameters = false;
    let decoded = decode_for_matching(path, &mut ambiguous, &mut has_parameters);
    let mut hidden_dot_segment = false;
    let path = remove_dot_segments(&decoded, has_parameters, &mut hidden_dot_segment);
    MatchPath { path, ambiguous: ambiguous || hidden_dot_segment, hidden_dot_segment }
}

/// `http://host/a/b` -> `/a/b`; `*` and anything without a leading '/' match as '/'.
fn strip_absolute_form(raw: &str) -> &str {
    let bytes = raw.as_bytes();
    let scheme_len = if bytes.len() >= 8 && bytes[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else if bytes.len() >= 7 && bytes[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else {
        return raw;
    };
    let after_scheme = &raw[scheme_len..];
    match after_scheme.find(['/', '?', '#']) {
        Some(i) => &after_scheme[i..],
        None => "/",
    }
}

/// Percent-decode the unreserved characters (RFC 3986 2.3) and read encoded or
/// literal slashes and backslashes as '/'; every other escape stays encoded,
/// uppercased, so equal paths compare equal. `has_parameters`: there is a ';'.
fn decode_for_matching(path: &str, ambiguous: &mut bool, has_parameters: &mut bool) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 1);
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            match crate::query::escaped_byte(bytes, i) {
                Some(decoded) => {
                    if is_unreserved(decoded) {
                        out.push(char::from(decoded));
                    } else if decoded == b'/' || decoded == b'\\' {
                        *ambiguous = true;
                        out.push('/');
                    } else {
                        // Kept escaped, in upper case: one spelling per byte.
                        out.push('%');
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(decoded >> 4)]));
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(decoded & 0xf)]));
                    }
                    i += 3;
                }
                // A stray '%' is not an escape: upstreams disagree on it too.
                None => {
                    *ambiguous = true;
                    out.push_str("%25");
                    i += 1;
                }
            }
        } else if byte == b'\\' {
            *ambiguous = true;
            out.push('/');
            i += 1;
        } else if byte == b';' {
            *has_parameters = true;
            out.push(';');
            i += 1;
        } else {
            // Copy the run up to the next byte of interest (keeps UTF-8 intact).
            let run_end =
                bytes[i..].iter().position(|&b| matches!(b, b'%' | b'\\' | b';')).map_or(bytes.len(), |n| i + n);
            out.push_str(&path[i..run_end]);
            i = run_end;
        }
    }
    out
}

/// RFC 3986 2.3: what a percent-encoding may be decoded to without changing a URI.
pub(crate) fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 5.2.4 on '/'-separated segments without their `;` parameters, with
/// empty segments dropped (merged slashes). A trailing slash, or a final `.` / `..`
/// segment, leaves a trailing '/'. `hidden_dot_segment`: a dot segment had parameters.
fn remove_dot_segments(path: &str, has_parameters: bool, hidden_dot_segment: &mut bool) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut hidden = false;
    for segment in path.split('/') {
        trailing_slash = false;
        let mut name = if has_parameters { segment.find(';').map_or(segment, |end| &segment[..end]) } else { segment };
        if name.starts_with('.') {
            // An encoded ';' separates nothing for Tomcat or Spring, but an upstream that
            // decodes first reads a dot segment: it is one here too (and so hidden).
            name = dots_before_encoded_semicolon(name).unwrap_or(name);
        }
        match name {
            "" => trailing_slash = true,
            "." | ".." => {
                hidden |= name.len() < segment.len();
                if name == ".." {
                    segments.pop();
                }
                trailing_slash = true;
            }
            other => segments.push(other),
        }
    }
    *hidden_dot_segment = hidden;
    let mut out = String::with_capacity(path.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    out
}

/// `..` of `..%3Bx`, `.` of `.%3Bx`.
fn dots_before_encoded_semicolon(segment: &str) -> Option<&str> {
    let dots = segment.len() - segment.trim_start_matches('.').len();
    segment.get(dots..).filter(|rest| rest.starts_with("%3B") && dots <= 2).and(segment.get(..dots))
}

/// Whether `path` (normalized) is under `prefix` (normalized): equal to it, or
/// below it at a segment boundary. `/healthz` matches `/healthz` and `/healthz/x`,
/// not `/healthzadmin`; a prefix ending in '/' needs that slash.
pub fn has_segment_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// A configured prefix or path in the form rules compare: it must already be
/// normalized (so the configuration means what it says), and unambiguous.
pub fn configured(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err("must start with '/'".into());
    }
    let normalized = normalize(path);
    if normalized.ambiguous || path.contains(['?', '#', ';']) {
        return Err("must not contain '?', '#', ';', '\\', '%2F', '%5C' or a stray '%'".into());
    }
    if normalized.path != path {
        return Err(format!("must be a normalized path (\"{}\")", normalized.path));
    }
    Ok(normalized.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> (String, bool) {
        let m = normalize(raw);
        (m.path, m.ambiguous)
    }

    #[test]
    fn dot_segments_and_duplicate_slashes() {
        assert_eq!(norm("/healthz/../orders"), ("/orders".into(), false));
        assert_eq!(norm("/a/./b//c"), ("/a/b/c".into(), false));
        assert_eq!(norm("//admin"), ("/admin".into(), false));
        assert_eq!(norm("/public/../admin"), ("/admin".into(), false));
        assert_eq!(norm("/../../etc"), ("/etc".into(), false));
        assert_eq!(norm("/a/b/.."), ("/a/".into(), false));
        assert_eq!(norm("/a/b/."), ("/a/b/".into(), false));
        assert_eq!(norm("/"), ("/".into(), false));
        assert_eq!(norm(""), ("/".into(), false));
        assert_eq!(norm("/x/"), ("/x/".into(), false));
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_kept_uppercased() {
        assert_eq!(norm("/%61dmin"), ("/admin".into(), false));
        assert_eq!(norm("/healthz/%2e%2e/orders"), ("/orders".into(), false));
        assert_eq!(norm("/healthz/%2E%2E/orders"), ("/orders".into(), false));
        assert_eq!(norm("/a%20b%7e"), ("/a%20b~".into(), false));
        assert_eq!(norm("/a%3fb"), ("/a%3Fb".into(), false));
        assert_eq!(norm("/caf\u{e9}"), ("/caf\u{e9}".into(), false));
    }

    #[test]
    fn encoded_slashes_and_backslashes_are_ambiguous_and_read_as_slashes() {
        assert_eq!(norm("/healthz/..%2forders"), ("/orders".into(), true));
        assert_eq!(norm("/healthz\\..\\orders"), ("/orders".into(), true));
        assert_eq!(norm("/admin%2Fusers"), ("/admin/users".into(), true));
        assert_eq!(norm("/a%5cb"), ("/a/b".into(), true));
        assert_eq!(norm("/a%zz"), ("/a%25zz".into(), true));
        assert_eq!(norm("/a%"), ("/a%25".into(), true));
    }

    #[test]
    fn parameters_are_removed_from_every_segment() {
        assert_eq!(norm("/mgmt;x=1/a"), ("/mgmt/a".into(), false));
        assert_eq!(norm("/mgmt;/a"), ("/mgmt/a".into(), false));
        assert_eq!(norm("/shop;jsessionid=AB12;v=2"), ("/shop".into(), false));
        assert_eq!(norm("/;x/admin"), ("/admin".into(), false));
        assert_eq!(norm("/a;x/../b"), ("/b".into(), false));
        assert_eq!(norm("/a/...;/b"), ("/a/.../b".into(), false), "not a dot segment to anyone");
        // An encoded ';' is part of the name (Tomcat and Spring split before decoding).
        assert_eq!(norm("/mgmt%3bx/a"), ("/mgmt%3Bx/a".into(), false));
    }

    #[test]
    fn dot_segments_with_parameters_are_resolved_ambiguous_and_hidden() {
        for (raw, servlet_reading) in [
            ("/healthz/%2e%2e;/mgmt/a", "/mgmt/a"),
            ("/healthz/..;/mgmt/a", "/mgmt/a"),
            ("/healthz/..;x=1/mgmt/a", "/mgmt/a"),
            ("/healthz/%2E%2E;/mgmt/a", "/mgmt/a"),
            ("/healthz/.%2e;/mgmt/a", "/mgmt/a"),
            ("/healthz/%2e.;/mgmt/a", "/mgmt/a"),
            ("/orders/%2e%2e;/billing", "/billing"),
            ("/a/.;/b", "/a/b"),
            ("/a/%2e;x/b", "/a/b"),
            ("/a/b/..;", "/a/"),
            ("/a/..%3b/b", "/b"),
            ("/a/.%3Bx/b", "/a/b"),
        ] {
            let m = normalize(raw);
            assert_eq!((m.path.as_str(), m.ambiguous, m.hidden_dot_segment), (servlet_reading, true, true), "{raw}");
        }
        assert!(!normalize("/a/..x;/b").hidden_dot_segment);
        assert!(!normalize("/a/x..;/b").hidden_dot_segment);
        assert_eq!(normalize("/a/...%3b/b").path, "/a/...%3B/b");
        assert!(!normalize("/a/...%3b/b").hidden_dot_segment);
    }

    #[test]
    fn query_fragment_and_absolute_form() {
        assert_eq!(norm("/a/../b?x=/../c"), ("/b".into(), false));
        assert_eq!(norm("/a#frag"), ("/a".into(), false));
        assert_eq!(norm("http://h/healthz/../orders"), ("/orders".into(), false));
        assert_eq!(norm("HTTPS://h:8443/x/./y?q"), ("/x/y".into(), false));
        assert_eq!(norm("http://h"), ("/".into(), false));
        assert_eq!(norm("*"), ("/*".into(), false));
    }

    #[test]
    fn prefixes_end_at_segment_boundaries() {
        assert!(has_segment_prefix("/healthz", "/healthz"));
        assert!(has_segment_prefix("/healthz/live", "/healthz"));
        assert!(!has_segment_prefix("/healthzadmin", "/healthz"));
        assert!(has_segment_prefix("/public/x", "/public/"));
        assert!(!has_segment_prefix("/public", "/public/"));
        assert!(has_segment_prefix("/anything", "/"));
        assert!(!has_segment_prefix("/PUBLIC/x", "/public"));
    }

    #[test]
    fn configured_paths_must_be_normal() {
        assert_eq!(configured("/healthz"), Ok("/healthz".into()));
        assert_eq!(configured("/public/"), Ok("/public/".into()));
        assert!(configured("healthz").is_err());
        assert!(configured("/a/../b").unwrap_err().contains("\"/b\""));
        assert!(configured("//a").is_err());
        assert!(configured("/%61").is_err());
        assert!(configured("/a%2fb").is_err());
        assert!(configured("/a?b").is_err());
        assert!(configured("/a;b").is_err());
        assert!(configured("/a/..;/b").is_err());
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for raw in ["%", "%%", "%e", "/%\u{e9}9", "\\", "http://", "https:/", "/\u{0}", "/é/%C3%A9"] {
            let m = normalize(raw);
            assert!(m.path.starts_with('/'), "{raw}");
        }
    }
}
