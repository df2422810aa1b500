//! The e2e's own small HTTP servers (the token issuer, the fault proxy): a listener
//! on 127.0.0.1 that hands each connection to a handler, and the request head reader.

use anyhow::{ensure, Result};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Accepts connections on a free loopback port until dropped.
pub struct Server {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    stop: Arc<AtomicBool>,
}

/// How a server takes its connections.
#[derive(Clone, Copy, PartialEq)]
pub enum Serving {
    /// Each on a thread of its own: a proxy's connections overlap.
    Concurrently,
    /// One after another: an issuer's answers are quick.
    OneAtATime,
}

impl Server {
    /// Serves each connection with `handle` on a free port of 127.0.0.1.
    pub fn start(
        serving: Serving,
        handle: impl Fn(TcpStream) -> Result<()> + Send + Sync + 'static,
    ) -> Result<Server> {
        Server::start_on("127.0.0.1", serving, handle)
    }

    /// `start`, on a free port of `ip` (another loopback address: `127.0.0.2`).
    pub fn start_on(
        ip: &str,
        serving: Serving,
        handle: impl Fn(TcpStream) -> Result<()> + Send + Sync + 'static,
    ) -> Result<Server> {
        let listener = TcpListener::bind((ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = Arc::new(handle);
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let handle = handle.clone();
                if serving == Serving::Concurrently {
                    std::thread::spawn(move || {
                        let _ = handle(stream);
                    });
                } else {
                    let _ = handle(stream);
                }
            }
        });
        Ok(Server { addr, stop })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The bytes up to and including the blank line that ends an HTTP request head.
pub fn read_head(stream: &mut TcpStream) -> Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ensure!(
            stream.read(&mut byte)? == 1,
            "the client closed before its request head ended"
        );
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
