//! Method overrides: headers and a query parameter that ask the upstream to act
//! on another method than the request's (`X-HTTP-Method-Override: DELETE` on a
//! POST), which Rails, Express's method-override, Jersey, Symfony, ASP.NET Core and
//! Google's APIs honour. Rules and privileges must judge the method the upstream
//! acts on: by default the overrides never reach it; else every method named is judged.

use crate::query;
use crate::request::{is_underscore_spelling_of, RequestFacts};

/// The override headers (also read with underscores by CGI, WSGI and PHP upstreams).
const HEADERS: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// The override parameter of Rails, Laravel, Symfony, Spring and Jersey (in a form
/// body too, which the filter does not read).
const PARAM: &str = "_method";

/// More methods than this in one request is not a client asking for one.
const MAX_OVERRIDES: usize = 8;

/// What the filter does with method overrides (`method_overrides`). The configuration
/// reads it from a string (`from_name`): a derived enum deserializer costs the module 4 KB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema), schemars(rename_all = "lowercase"))]
pub enum MethodOverrides {
    /// The override headers and the `_method` query parameter (under every spelling) are
    /// removed before the upstream: it acts on the method the filter judged.
    Remove,
    /// They are forwarded, and the request is judged as each method it names too: every
    /// one must fall under the same rule (400 otherwise) and be within the principal's `methods`.
    Judge,
}

impl MethodOverrides {
    pub fn from_name(name: &str) -> Option<MethodOverrides> {
        match name {
            "remove" => Some(MethodOverrides::Remove),
            "judge" => Some(MethodOverrides::Judge),
            _ => None,
        }
    }
}

/// Whether request header `name` (lowercase) is an override header, or an underscore spelling of one.
pub(crate) fn is_override_header(name: &str) -> bool {
    HEADERS.iter().any(|header| *header == name || is_underscore_spelling_of(name, header))
}

/// `path` as the upstream gets it: without any spelling of `_method` (`Remove`), or
/// without those but the one judged (`Judge`: its name, however encoded); None when
/// nothing changes.
pub(crate) fn upstream_path(path: &str, overrides: MethodOverrides) -> Option<String> {
    let keep: &[&str] = match overrides {
        MethodOverrides::Remove => &[],
        MethodOverrides::Judge => &[PARAM],
    };
    may_have_param(path).then(|| query::without_params(path, &[PARAM], keep)).flatten()
}

/// Whether the query of `path` may hold a spelling of `_method`: most have neither an
/// escape nor the word, and are not parsed.
fn may_have_param(path: &str) -> bool {
    path.split_once('?').is_some_and(|(_, query)| {
        query.contains('%') || query.as_bytes().windows(6).any(|w| w.eq_ignore_ascii_case(b"method"))
    })
}

/// The methods the request names besides its own (uppercase, each once): every override
/// header's, and `_method`'s (its other spellings never reach the upstream:
/// `upstream_path`). `Err` past `MAX_OVERRIDES`, or for `_method` given twice. A header
/// value may list several (`PUT, DELETE`): each counts.
pub(crate) fn requested(request: &RequestFacts) -> Result<Vec<String>, TooMany> {
    let param = match may_have_param(request.path) {
        true => query::raw_value(request.path, PARAM).map_err(|_| TooMany)?,
        false => None,
    };
    let param = param.map(|raw| query::percent_decode(raw).unwrap_or_else(|| raw.to_string()));
    let from_headers =
        request.headers.iter().filter(|(name, _)| is_override_header(name)).map(|(_, value)| value.as_ref());
    let mut methods: Vec<String> = Vec::new();
    for value in from_headers.chain(param.as_deref()) {
        for method in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let method = method.to_ascii_uppercase();
            if !method.eq_ignore_ascii_case(request.method) && !methods.contains(&method) {
                if methods.len() == MAX_OVERRIDES {
                    return Err(TooMany);
                }
                methods.push(method);
            }
        }
    }
    Ok(methods)
}

/// A request naming more than `MAX_OVERRIDES` methods, or `_method` twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooMany;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_headers_under_any_spelling() {
        for name in ["x-http-method-override", "x_http_method_override", "x-http-method", "x_method-override"] {
            assert!(is_override_header(name), "{name}");
        }
        assert!(!is_override_header("x-http-methods") && !is_override_header("x-method"));
    }

    #[test]
    fn the_parameter_is_removed_under_every_spelling_but_the_one_judged() {
        let path = "/o?a=1&_METHOD=PUT&%5Fmethod=DELETE&.method=x&_method[]=y&methods=ok";
        assert_eq!(upstream_path(path, MethodOverrides::Remove).as_deref(), Some("/o?a=1&methods=ok"));
        assert_eq!(upstream_path(path, MethodOverrides::Judge).as_deref(), Some("/o?a=1&%5Fmethod=DELETE&methods=ok"));
        for path in ["/o?a=1&b=2", "/o?method=1", "/o"] {
            assert_eq!(upstream_path(path, MethodOverrides::Remove), None);
        }
        assert_eq!(upstream_path("/o?_method=PUT", MethodOverrides::Judge), None);
    }

    #[test]
    fn every_method_named_besides_the_requests_own() {
        let headers = crate::testing::headers(&[
            ("x-http-method-override", "delete"),
            ("x_http_method", "PUT, PATCH"),
            ("x-method-override", "POST"),
        ]);
        let request = RequestFacts::new("POST", "/o?%5Fmethod=Merge&_METHOD=unjudged", &headers);
        assert_eq!(requested(&request), Ok(vec!["DELETE".into(), "PUT".into(), "PATCH".into(), "MERGE".into()]));
        let twice = RequestFacts::new("POST", "/o?_method=PUT&%5Fmethod=PUT", &[]);
        assert_eq!(requested(&twice), Err(TooMany));
        let many = crate::testing::headers(&[("x-http-method", "A,B,C,D,E,F,G,H,I")]);
        assert_eq!(requested(&RequestFacts::new("GET", "/", &many)), Err(TooMany));
        assert_eq!(requested(&RequestFacts::new("GET", "/", &[])), Ok(vec![]));
    }
}
