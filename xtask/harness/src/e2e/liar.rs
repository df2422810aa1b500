//! A registry that misbehaves on purpose: a loopback server that answers each request
//! as its `rule` says (a status and body of its choosing, a body that never ends, a
//! redirect, a dropped connection) or forwards it to a real registry behind it. It
//! records every request it gets, so checks can say what the registry received.

use super::loopback::{read_head, Server, Serving};
use anyhow::Result;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the liar saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The whole head, headers and all.
    pub head: String,
}

impl Request {
    /// The value of `name` (case-insensitive), if the request carried it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// `METHOD` on a path that contains `part`.
    pub fn is(&self, method: &str, part: &str) -> bool {
        self.method == method && self.path.contains(part)
    }
}

/// What the liar does with one request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Pass it to the registry behind (a 502 when there is none).
    Forward,
    /// This status, these extra headers, this body.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 200 and a body that never ends (until the client goes, or a minute passes).
    Endless { content_type: String },
    /// 200 and a body of one byte a second.
    Drip,
    /// Close the connection without a word.
    Drop,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer::Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Answer {
        Answer::Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn header(status: u16, name: &str, value: &str) -> Answer {
        Answer::Reply {
            status,
            headers: vec![(name.into(), value.into())],
            body: Vec::new(),
        }
    }
}

type Rule = dyn Fn(&Request) -> Answer + Send + Sync;

pub struct Liar {
    server: Server,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Liar {
    /// A liar on 127.0.0.1 in front of `upstream` (`HOST:PORT`, or none).
    pub fn start(
        upstream: Option<&str>,
        rule: impl Fn(&Request) -> Answer + Send + Sync + 'static,
    ) -> Result<Liar> {
        Liar::start_on("127.0.0.1", upstream, rule)
    }

    /// The same on another loopback address.
    pub fn start_on(
        ip: &str,
        upstream: Option<&str>,
        rule: impl Fn(&Request) -> Answer + Send + Sync + 'static,
    ) -> Result<Liar> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (record, upstream) = (seen.clone(), upstream.map(str::to_string));
        let rule: Arc<Rule> = Arc::new(rule);
        let server = Server::start_on(ip, Serving::Concurrently, move |client| {
            serve(client, upstream.as_deref(), rule.as_ref(), &record)
        })?;
        Ok(Liar { server, seen })
    }

    /// `IP:PORT`.
    pub fn host(&self) -> &str {
        &self.server.addr
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Request> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many requests so far were `method` on a path containing `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.seen().iter().filter(|r| r.is(method, part)).count()
    }
}

/// One connection: read the head, record it, answer it as the rule says.
fn serve(
    mut client: TcpStream,
    upstream: Option<&str>,
    rule: &Rule,
    record: &Mutex<Vec<Request>>,
) -> Result<()> {
    let head = read_head(&mut client)?;
    let mut words = head.split_whitespace();
    let request = Request {
        method: words.next().unwrap_or_default().to_string(),
        path: words.next().unwrap_or_default().to_string(),
        head: head.clone(),
    };
    record.lock().map(|mut r| r.push(request.clone())).ok();
    match rule(&request) {
        Answer::Forward => match upstream {
            Some(upstream) => return forward(client, upstream, &head),
            None => reply(&mut client, 502, &[], b"")?,
        },
        Answer::Reply {
            status,
            headers,
            body,
        } => reply(&mut client, status, &headers, &body)?,
        Answer::Endless { content_type } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n"
            );
            client.write_all(head.as_bytes())?;
            let chunk = vec![b' '; 64 << 10];
            let started = Instant::now();
            // Bounded: the client hangs up long before; the liar stops by itself anyway.
            while started.elapsed() < Duration::from_secs(60) && client.write_all(&chunk).is_ok() {}
        }
        Answer::Drip => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n";
            client.write_all(head.as_bytes())?;
            for _ in 0..60 {
                if client.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Answer::Drop => {}
    }
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

fn reply(
    client: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} Liar\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes())?;
    client.write_all(body)?;
    Ok(())
}

/// Passes the request on with `Connection: close`, so that every request comes on a
/// connection of its own, and copies the answer back.
fn forward(client: TcpStream, upstream: &str, head: &str) -> Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    let mut forwarded: String = head
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .take_while(|line| !line.is_empty())
        .map(|line| format!("{line}\r\n"))
        .collect();
    forwarded.push_str("Connection: close\r\n\r\n");
    server.write_all(forwarded.as_bytes())?;
    let (mut from_client, mut to_server) = (client.try_clone()?, server.try_clone()?);
    let body = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let mut to_client = client;
    std::io::copy(&mut server, &mut to_client)?;
    to_client.shutdown(Shutdown::Both)?;
    let _ = body.join();
    Ok(())
}
