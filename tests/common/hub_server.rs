//! A stand-in for the Hugging Face Hub on 127.0.0.1: it serves the Hub's file URL layout
//! (`/{org}/{name}/resolve/{revision}/{path}`) with the headers hf-hub reads (ETag,
//! X-Repo-Commit, Content-Length, X-Error-Code), so the real hub client code runs end to end.
//! Repos can be gated behind a token, files can drop the connection mid-body or stream slowly.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Clone, Default)]
pub struct RepoSpec {
    pub dir: PathBuf,
    /// Requests without `Authorization: Bearer <token>` get 401 GatedRepo.
    pub token: Option<String>,
}

#[derive(Default)]
pub struct Behaviour {
    /// Files whose next N GET bodies are cut off halfway.
    pub drop_body: HashMap<String, usize>,
    /// Files streamed in small chunks with a pause between them.
    pub slow: Vec<String>,
}

pub struct HubServer {
    pub endpoint: String,
    pub requests: Arc<AtomicUsize>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    stop: Arc<AtomicBool>,
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

impl HubServer {
    pub fn start(repos: HashMap<String, RepoSpec>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicUsize::new(0));
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let repos = Arc::new(repos);
        {
            let (requests, behaviour, stop) = (requests.clone(), behaviour.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (repos, requests, behaviour) = (repos.clone(), requests.clone(), behaviour.clone());
                    std::thread::spawn(move || {
                        let _ = serve(stream, &repos, &requests, &behaviour);
                    });
                }
            });
        }
        Self { endpoint, requests, behaviour, stop }
    }
}

fn etag_of(bytes: &[u8]) -> String {
    // FNV-1a, enough to name blobs in the cache.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}{:08x}", bytes.len())
}

fn serve(
    stream: TcpStream,
    repos: &HashMap<String, RepoSpec>,
    requests: &AtomicUsize,
    behaviour: &Mutex<Behaviour>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut auth = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let mut out = stream;
    // /{org}/{name}/resolve/{rev}/{path...}
    let segments: Vec<&str> = target.trim_start_matches('/').splitn(5, '/').collect();
    if segments.len() < 5 || segments[2] != "resolve" {
        return respond(&mut out, "404 Not Found", &[("X-Error-Code", "EntryNotFound")], b"", &method);
    }
    let repo_id = format!("{}/{}", segments[0], segments[1]);
    let (revision, file) = (segments[3], segments[4]);
    let Some(repo) = repos.get(&repo_id) else {
        return respond(&mut out, "401 Unauthorized", &[("X-Error-Code", "RepoNotFound")], b"", &method);
    };
    if let Some(token) = &repo.token {
        if auth.as_deref() != Some(&format!("Bearer {token}")) {
            let headers = [("X-Error-Code", "GatedRepo"), ("X-Error-Message", "Access to this model is restricted")];
            return respond(&mut out, "401 Unauthorized", &headers, b"", &method);
        }
    }
    if revision != "main" && revision != COMMIT {
        return respond(&mut out, "404 Not Found", &[("X-Error-Code", "RevisionNotFound")], b"", &method);
    }
    let path: &Path = Path::new(file);
    let full = repo.dir.join(path);
    let Ok(bytes) = std::fs::read(&full) else {
        let headers = [("X-Error-Code", "EntryNotFound"), ("X-Repo-Commit", COMMIT)];
        return respond(&mut out, "404 Not Found", &headers, b"", &method);
    };
    let etag = format!("\"{}\"", etag_of(&bytes));
    let headers = [("ETag", etag.as_str()), ("X-Repo-Commit", COMMIT)];
    if method == "GET" {
        let (drop, slow) = {
            let mut b = behaviour.lock().unwrap();
            let drop = match b.drop_body.get_mut(file) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
            (drop, b.slow.iter().any(|f| f == file))
        };
        if drop {
            write_head(&mut out, "200 OK", &headers, bytes.len())?;
            out.write_all(&bytes[..bytes.len() / 2])?;
            out.flush()?;
            return Ok(()); // the connection closes with half the body sent
        }
        if slow {
            write_head(&mut out, "200 OK", &headers, bytes.len())?;
            for chunk in bytes.chunks(1024) {
                out.write_all(chunk)?;
                out.flush()?;
                std::thread::sleep(Duration::from_millis(20));
            }
            return Ok(());
        }
    }
    respond(&mut out, "200 OK", &headers, &bytes, &method)
}

fn write_head(out: &mut TcpStream, status: &str, headers: &[(&str, &str)], len: usize) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    method: &str,
) -> std::io::Result<()> {
    write_head(out, status, headers, body.len())?;
    if method != "HEAD" {
        out.write_all(body)?;
    }
    out.flush()
}
