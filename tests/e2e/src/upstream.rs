//! The echo upstream: a std-only HTTP/1.1 server on a free loopback port that
//! answers every request with 200 and a JSON body listing what it received,
//! so a test sees exactly what the application behind Envoy saw. A test can
//! script the answer instead ([`EchoUpstream::set_reply`]): the differential
//! runs answer exactly as a scenario's mocked upstream does.

use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::client::{framing, read_body, read_head, Framing};

/// What the upstream answers.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `content-type` of every answer.
    pub content_type: String,
    /// Extra response headers, e.g. `("x-powered-by", "PHP")` to check leaks are stripped.
    pub headers: Vec<(String, String)>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            content_type: "application/json".to_owned(),
            headers: Vec::new(),
        }
    }
}

/// A request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// Method.
    pub method: String,
    /// Request target.
    pub path: String,
    /// Headers in wire order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// The JSON the upstream answers with: `{"method", "path", "headers":
    /// {name: value}}`, repeated headers joined with `", "`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut headers = serde_json::Map::new();
        for (name, value) in &self.headers {
            let joined = match headers.get(name).and_then(|v| v.as_str()) {
                Some(prev) => format!("{prev}, {value}"),
                None => value.clone(),
            };
            headers.insert(name.clone(), joined.into());
        }
        serde_json::json!({"method": self.method, "path": self.path, "headers": headers})
    }
}

/// A scripted answer, replacing the echo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, in order (`content-length` is added).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Read the request and never answer (the caller times out).
    pub hang: bool,
}

type Shared<T> = Arc<Mutex<T>>;

/// A running echo upstream; stops its threads and closes its connections on drop.
pub struct EchoUpstream {
    addr: SocketAddr,
    seen: Shared<Vec<SeenRequest>>,
    reply: Shared<Option<Reply>>,
    stop: Arc<AtomicBool>,
    connections: Shared<Vec<TcpStream>>,
    acceptor: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl EchoUpstream {
    /// Binds `127.0.0.1:0` and starts the accept thread.
    ///
    /// # Panics
    ///
    /// If loopback cannot be bound.
    pub fn start(config: UpstreamConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let seen: Shared<Vec<SeenRequest>> = Arc::default();
        let reply: Shared<Option<Reply>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Shared<Vec<TcpStream>> = Arc::default();
        let config = Arc::new(config);
        let acceptor = {
            let (seen, reply, stop, connections) = (
                seen.clone(),
                reply.clone(),
                stop.clone(),
                connections.clone(),
            );
            std::thread::spawn(move || {
                let mut handlers = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        lock(&connections).push(clone);
                    }
                    let (seen, reply, config) = (seen.clone(), reply.clone(), config.clone());
                    handlers.push(std::thread::spawn(move || {
                        // A reset from Envoy being killed ends the connection; not an error.
                        let _ = serve(stream, &config, &seen, &reply);
                    }));
                }
                handlers
            })
        };
        Self {
            addr,
            seen,
            reply,
            stop,
            connections,
            acceptor: Some(acceptor),
        }
    }

    /// The address to point a cluster at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        lock(&self.seen).clone()
    }

    /// Answers every later request with `reply` (`None`: the echo again).
    pub fn set_reply(&self, reply: Option<Reply>) {
        *lock(&self.reply) = reply;
    }

    /// Removes and returns the requests seen so far, in arrival order. A long
    /// run (the soak) drains the record as it goes, so it checks every
    /// request the application saw without holding them all in memory.
    pub fn take_seen(&self) -> Vec<SeenRequest> {
        std::mem::take(&mut *lock(&self.seen))
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        lock(&self.seen).clear();
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the acceptor sees `stop`; once it has
        // returned no connection can be added, so shutting every recorded one
        // down unblocks every handler's read.
        let _ = TcpStream::connect(self.addr);
        let handlers = match self.acceptor.take() {
            Some(acceptor) => acceptor.join().unwrap_or_default(),
            None => Vec::new(),
        };
        for conn in lock(&self.connections).iter() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        for handler in handlers {
            let _ = handler.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not hide the upstream's record.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(
    stream: TcpStream,
    config: &UpstreamConfig,
    seen: &Mutex<Vec<SeenRequest>>,
    scripted: &Mutex<Option<Reply>>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some((start, headers)) = read_head(&mut reader)? {
        let mut parts = start.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let body = read_body(&mut reader, framing(&headers, Framing::None)?)?;
        let request = SeenRequest {
            method,
            path,
            headers,
            body,
        };
        let scripted = lock(scripted).clone();
        if let Some(reply) = scripted {
            lock(seen).push(request);
            if reply.hang {
                continue;
            }
            std::thread::sleep(reply.delay);
            writer.write_all(&encode_reply(&reply))?;
            continue;
        }
        let answer = request.to_json().to_string();
        lock(seen).push(request);
        let mut head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            config.content_type,
            answer.len()
        );
        for (name, value) in &config.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        // One write per answer: a head/body split would meet Nagle and
        // delayed ACK and add ~40 ms to every request.
        head.push_str(&answer);
        writer.write_all(head.as_bytes())?;
    }
    Ok(())
}

/// A scripted answer on the wire, in one buffer.
fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", reply.body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(&reply.body);
    out
}
