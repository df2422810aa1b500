//! A registry that fails for a moment, as a release meets one: a loopback proxy in
//! front of the real registry that answers blob uploads with 503 or 500, or drops the
//! connection, then forwards. Push must retry, bounded, and complete; a registry that
//! never recovers must end the push with one line and no tag.

use super::loopback::{read_head, Server};
use super::registry::{Registry, PASSWORD, USER};
use super::{ok, xtask_cli, Run, Said};
use anyhow::{ensure, Context, Result};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use xshell::cmd;
use xtask::push;

/// What the proxy does to one blob upload request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Status(u16),
    Drop,
}

/// The proxy: `faults` for the first upload requests, then `after` for every later
/// one (`None`: forward).
struct FaultProxy {
    server: Server,
    faulted: Arc<Mutex<Vec<Fault>>>,
}

impl FaultProxy {
    fn start(upstream: &str, faults: Vec<Fault>, after: Option<Fault>) -> Result<FaultProxy> {
        let faulted = Arc::new(Mutex::new(Vec::new()));
        let plan = Mutex::new(faults.into_iter());
        let (upstream, record) = (upstream.to_string(), faulted.clone());
        let server = Server::start(true, move |client| {
            serve(client, &upstream, &plan, after, &record)
        })?;
        Ok(FaultProxy { server, faulted })
    }

    fn host(&self) -> &str {
        &self.server.addr
    }

    fn faulted(&self) -> Vec<Fault> {
        self.faulted.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// One connection: read the request head; fault an upload, or forward with
/// `Connection: close`, so that every request comes on a connection of its own.
fn serve(
    mut client: TcpStream,
    upstream: &str,
    plan: &Mutex<std::vec::IntoIter<Fault>>,
    after: Option<Fault>,
    record: &Mutex<Vec<Fault>>,
) -> Result<()> {
    let head = read_head(&mut client)?;
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let is_upload = request_line.starts_with("POST ") && request_line.contains("/blobs/uploads/");
    let fault = if is_upload {
        plan.lock().ok().and_then(|mut p| p.next()).or(after)
    } else {
        None
    };
    if let Some(fault) = fault {
        record.lock().map(|mut r| r.push(fault)).ok();
        if let Fault::Status(code) = fault {
            let reply = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            client.write_all(reply.as_bytes())?;
        }
        client.shutdown(Shutdown::Both)?;
        return Ok(());
    }
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
    std::io::copy(&mut server, &mut client)?;
    client.shutdown(Shutdown::Both)?;
    let _ = body.join();
    Ok(())
}

/// Push through a registry that fails its first three upload tries, then through one
/// that never recovers.
pub fn check(run: &Run, registry: &Registry) -> Result<()> {
    let flaky = FaultProxy::start(
        &registry.host,
        vec![Fault::Status(503), Fault::Drop, Fault::Status(500)],
        None,
    )?;
    let authfile = registry.authfile_as(flaky.host(), PASSWORD)?;
    let to = format!("{}/flaky:{}", flaky.host(), run.version);
    let digest = xtask::runtime()?.block_on(push::push(
        &run.layout,
        &to,
        std::slice::from_ref(&authfile),
        false,
    ))?;
    ensure!(
        digest == run.image.index.digest().to_string(),
        "the retried push gave {digest}, not the layout's index"
    );
    ok(format!(
        "retry: push through a registry that answered {:?} to the first uploads completed, {digest}",
        flaky.faulted()
    ));

    let broken = FaultProxy::start(&registry.host, Vec::new(), Some(Fault::Status(503)))?;
    let authfile = registry.authfile_as(broken.host(), PASSWORD)?;
    let to = format!("{}/broken:{}", broken.host(), run.version);
    let (sh, layout) = (run.sh, &run.layout);
    let push = xtask_cli(sh).args(["push", "--layout"]).arg(layout);
    let said = Said::of(push.args(["--to", &to, "--authfile"]).arg(&authfile))?;
    let tries = broken.faulted().len();
    let gave_up = format!("gave up after {} tries", xtask::registry::TRIES);
    let error = said
        .sole_error()
        .filter(|e| !said.success() && e.contains(&gave_up))
        .filter(|_| tries == xtask::registry::TRIES as usize)
        .with_context(|| {
            format!(
                "a push to a registry that never recovers: {tries} upload tries, stderr {:?}",
                said.stderr
            )
        })?;
    // Nothing was tagged: the real registry has no such tag.
    let (creds, host, version) = (format!("{USER}:{PASSWORD}"), &registry.host, &run.version);
    let tagged = cmd!(
        sh,
        "skopeo inspect --raw --tls-verify=false --creds {creds} docker://{host}/broken:{version}"
    )
    .quiet()
    .ignore_stderr()
    .run()
    .is_ok();
    ensure!(
        !tagged,
        "a push that failed left {host}/broken:{version} tagged"
    );
    ok(format!(
        "retry: a registry that always answers 503 gets {tries} tries, then one line, no tag: {error}"
    ));
    Ok(())
}
