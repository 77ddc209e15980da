//! A readable text form of requests for the native-core targets, so their
//! seed corpora are real-looking files a person can read and extend:
//!
//! ```text
//! :method: GET
//! :path: /api/orders?version=stable
//! cookie: session=abc; canary=true
//! x-forwarded-for: 203.0.113.7, 10.0.0.2
//! @peer: 10.0.0.1:45000
//! @advance: 1500
//! < content-type: text/html
//! < server: nginx
//! ---
//! :method: POST
//! ...
//! ```
//!
//! One `name: value` per line, split at the first `": "` (after a leading
//! `:` for pseudo-headers); a line without one is a name with an empty
//! value. Names are lower-cased, as Envoy hands them over; values are raw
//! bytes (anything but LF, which Envoy's codecs never pass). `< ` starts a
//! response header, `@` a directive for the target, `---` the next request.
//! Parsing never fails: any bytes are some list of requests.

/// Most requests one input may hold, to keep an execution short.
pub const MAX_REQUESTS: usize = 64;

/// One request of the text form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextRequest {
    /// Request headers in order, pseudo-headers included.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Response headers in order (lines starting `< `).
    pub response: Vec<(String, Vec<u8>)>,
    /// Directives (lines starting `@`), name without the `@`.
    pub directives: Vec<(String, Vec<u8>)>,
}

impl TextRequest {
    /// First value of request header `name`.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first(&self.headers, name)
    }

    /// Every value of request header `name`.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// First value of response header `name`.
    #[must_use]
    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        first(&self.response, name)
    }

    /// First value of directive `name`.
    #[must_use]
    pub fn directive(&self, name: &str) -> Option<&[u8]> {
        first(&self.directives, name)
    }

    /// A directive read as a decimal number.
    #[must_use]
    pub fn directive_number(&self, name: &str) -> Option<u64> {
        std::str::from_utf8(self.directive(name)?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

fn first<'a>(pairs: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// Splits `line` into a lower-cased name and a raw value.
fn pair(line: &[u8]) -> (String, Vec<u8>) {
    let from = usize::from(line.first() == Some(&b':'));
    let at = line
        .get(from..)
        .and_then(|rest| rest.windows(2).position(|w| w == b": "))
        .map(|i| i + from);
    let (name, value) = match at {
        Some(at) => (
            line.get(..at).unwrap_or_default(),
            line.get(at + 2..).unwrap_or_default(),
        ),
        None => (line, &b""[..]),
    };
    (
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        value.to_vec(),
    )
}

/// Parses the text form; see the module docs.
#[must_use]
pub fn parse(input: &[u8]) -> Vec<TextRequest> {
    let mut requests = vec![TextRequest::default()];
    for line in input.split(|&b| b == b'\n') {
        if line == b"---" {
            if requests.len() >= MAX_REQUESTS {
                break;
            }
            requests.push(TextRequest::default());
            continue;
        }
        let Some(current) = requests.last_mut() else {
            break;
        };
        if line.is_empty() || line.first() == Some(&b'#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"< ") {
            current.response.push(pair(rest));
        } else if let Some(rest) = line.strip_prefix(b"@") {
            current.directives.push(pair(rest));
        } else {
            current.headers.push(pair(line));
        }
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_headers_responses_and_directives_are_read() {
        let requests =
            parse(b":path: /a?b=1\ncookie: a=b: c\n< server: x\n@advance: 15\n---\nX-Up: \xff");
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].header(":path"), Some(&b"/a?b=1"[..]));
        assert_eq!(requests[0].header("cookie"), Some(&b"a=b: c"[..]));
        assert_eq!(requests[0].response_header("server"), Some(&b"x"[..]));
        assert_eq!(requests[0].directive_number("advance"), Some(15));
        assert_eq!(requests[1].header("x-up"), Some(&b"\xff"[..]));
    }
}
