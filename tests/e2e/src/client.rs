//! A minimal HTTP/1.1 client on one keep-alive connection, plus the message
//! parsing the echo upstream shares with it. Only what the tests and the bench
//! need: request line and headers out; status, headers and a body framed by
//! `content-length`, `chunked` or connection close back.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in wire order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).into_iter().next()
    }

    /// Every value of header `name` (any case), in wire order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    ///
    /// If it is not JSON; the message shows the body.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// One keep-alive client connection.
pub struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Sent as `host` when a request does not set one.
    pub default_host: String,
}

impl Connection {
    /// Connects with `TCP_NODELAY` (each request is one small write) and a
    /// 10 s read timeout, so a hung Envoy fails the test instead of hanging it.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let writer = stream.try_clone()?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
            default_host: "example.com".to_owned(),
        })
    }

    /// Sends a request without body and reads the response.
    ///
    /// # Errors
    ///
    /// I/O errors and malformed responses.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Response> {
        let raw = encode_request(method, path, headers, &self.default_host, b"");
        self.send_raw(&raw, method == "HEAD")
    }

    /// Writes pre-encoded request bytes and reads one response; the bench
    /// encodes its request once and sends it many times.
    ///
    /// # Errors
    ///
    /// I/O errors and malformed responses.
    pub fn send_raw(&mut self, raw: &[u8], head_request: bool) -> io::Result<Response> {
        self.writer.write_all(raw)?;
        read_response(&mut self.reader, head_request)
    }
}

/// Encodes a request; adds `host` and, for a non-empty body, `content-length`.
pub fn encode_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    default_host: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        out.push_str(&format!("host: {default_host}\r\n"));
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One-shot GET on a fresh connection.
///
/// # Panics
///
/// On any I/O error, naming the address and path.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    Connection::open(addr)
        .and_then(|mut c| c.request("GET", path, headers))
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// A message head: the start line and lower-cased `(name, value)` header pairs.
pub type Head = (String, Vec<(String, String)>);

/// Reads a status line and header block: the start line, then lower-cased
/// `(name, value)` pairs. `Ok(None)` on a clean EOF before the first byte
/// (the peer closed an idle keep-alive connection).
///
/// Bytes that are not UTF-8 (Envoy forwards 0x80-0xFF in header values,
/// and the soak sends them on purpose) are decoded lossily rather than
/// failing the message: the echo upstream must answer such a request, not
/// drop it and leave Envoy waiting for its route timeout.
///
/// # Errors
///
/// I/O errors, EOF inside the head, and lines that are not `name: value`.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut start = String::new();
    if read_line_lossy(reader, &mut start)? == 0 {
        return Ok(None);
    }
    let start = start.trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if read_line_lossy(reader, &mut line)? == 0 {
            return Err(invalid("EOF inside the header block"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(Some((start, headers)));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(&format!("not a header line: {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// `BufRead::read_line` that decodes invalid UTF-8 lossily instead of
/// failing; returns the bytes read (0 at EOF).
fn read_line_lossy(reader: &mut impl BufRead, line: &mut String) -> io::Result<usize> {
    let mut bytes = Vec::new();
    let n = reader.read_until(b'\n', &mut bytes)?;
    line.push_str(&String::from_utf8_lossy(&bytes));
    Ok(n)
}

/// How a message body is framed, from its headers.
pub enum Framing {
    /// No body (HEAD answers, 1xx/204/304, or a request without length).
    None,
    /// Exactly this many bytes.
    Length(usize),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Until the peer closes (a response without length).
    UntilClose,
}

/// The framing of a message with these headers; `no_length` is what a
/// message without `content-length` or chunking means (requests: no body;
/// responses: read to close).
pub fn framing(headers: &[(String, String)], no_length: Framing) -> io::Result<Framing> {
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return Ok(Framing::Chunked);
    }
    match headers.iter().find(|(n, _)| n == "content-length") {
        Some((_, v)) => v
            .parse()
            .map(Framing::Length)
            .map_err(|_| invalid(&format!("bad content-length {v:?}"))),
        None => Ok(no_length),
    }
}

/// Reads a body framed as `framing`.
///
/// # Errors
///
/// I/O errors and bad chunk sizes.
pub fn read_body(reader: &mut impl BufRead, framing: Framing) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        Framing::UntilClose => {
            reader.read_to_end(&mut body)?;
        }
        Framing::Chunked => loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size_text = size_line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(&format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(body.get_mut(start..).unwrap_or_default())?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        },
    }
    Ok(body)
}

fn read_response(reader: &mut impl BufRead, head_request: bool) -> io::Result<Response> {
    let (start, headers) = read_head(reader)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"))?;
    let status: u16 = start
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(&format!("bad status line {start:?}")))?;
    let bodiless = head_request || status < 200 || status == 204 || status == 304;
    let body = if bodiless {
        Vec::new()
    } else {
        read_body(reader, framing(&headers, Framing::UntilClose)?)?
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
