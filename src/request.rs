//! The facts of one request that the decision reads.

/// Header names are lowercase, as Envoy gives them; values as read (lossily decoded).
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// `:path`, query string included.
    pub path: &'a str,
    pub headers: &'a [(String, String)],
}

impl<'a> RequestFacts<'a> {
    /// The request as the headers give it (`:method`, `:path`).
    pub fn from_headers(headers: &'a [(String, String)]) -> RequestFacts<'a> {
        let pseudo = |name: &str| headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str());
        RequestFacts { method: pseudo(":method"), path: pseudo(":path"), headers }
    }

    /// Every value of a header.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}
