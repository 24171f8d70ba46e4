//! The HTTP side of a remote model: one client per endpoint with timeouts, a limit on requests in
//! flight, retries with backoff where a retry cannot do harm, the bearer token, and errors that
//! say what went wrong in the user's terms.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::StatusCode;

use super::spec::RemoteSpec;
use super::RemoteError;

/// An answer with the time it took.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// What the server says it spent, when it says (`Server-Timing`, TEI's `x-total-time`).
    pub server_ms: Option<f64>,
}

/// When a failed call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads (health, metadata): retried on any transport error, timeouts and 502/503/504.
    Idempotent,
    /// Inference: retried only when the server cannot have started on it (the connection was
    /// refused, or it answered 503 "overloaded"), so a slow model never gets a second copy.
    NotReceived,
}

pub(crate) struct Endpoint {
    client: Client,
    base: url::Url,
    token: Option<String>,
    timeout: Duration,
    retries: u32,
    gate: Mutex<Gate>,
    freed: Condvar,
    limit: usize,
}

/// A first-come, first-served limit on requests in flight: callers take a ticket and go in
/// ticket order, so under load no caller waits behind later ones (a plain condition variable
/// wakes an arbitrary waiter, which starves some).
#[derive(Default)]
struct Gate {
    next_ticket: u64,
    turn: u64,
    in_flight: usize,
}

impl Endpoint {
    pub fn new(spec: &RemoteSpec) -> Result<Self, RemoteError> {
        let token = match &spec.options.token_env {
            Some(var) => match std::env::var(var) {
                Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                _ => return Err(RemoteError::MissingToken(var.clone())),
            },
            None => None,
        };
        let client = Client::builder()
            .timeout(spec.options.timeout)
            .connect_timeout(spec.options.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("modeldeck/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(spec.options.concurrency)
            .build()
            .map_err(|e| RemoteError::Network { url: spec.endpoint(), detail: chain(&e) })?;
        Ok(Self {
            client,
            base: spec.base.clone(),
            token,
            timeout: spec.options.timeout,
            retries: spec.options.retries,
            gate: Mutex::new(Gate::default()),
            freed: Condvar::new(),
            limit: spec.options.concurrency,
        })
    }

    pub fn url(&self, path: &str) -> String {
        self.base.join(path).map(|u| u.to_string()).unwrap_or_else(|_| format!("{}{path}", self.base))
    }

    /// GET `path`; the status is checked (2xx) and the body must be JSON.
    pub fn get_json(&self, path: &str) -> Result<(serde_json::Value, Reply), RemoteError> {
        let reply = self.call(reqwest::Method::GET, path, None, Retry::Idempotent)?;
        let json = self.json(path, &reply)?;
        Ok((json, reply))
    }

    /// POST a JSON body to `path`; the status is checked (2xx) and the answer must be JSON.
    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        retry: Retry,
    ) -> Result<(serde_json::Value, Reply), RemoteError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| RemoteError::Protocol { url: self.url(path), reason: e.to_string() })?;
        let reply = self.call(reqwest::Method::POST, path, Some(bytes), retry)?;
        let json = self.json(path, &reply)?;
        Ok((json, reply))
    }

    /// One call: waits for a free slot under the concurrency limit, then sends with retries.
    /// A non-2xx answer is an error carrying the server's message.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        retry: Retry,
    ) -> Result<Reply, RemoteError> {
        let url = self.url(path);
        let _slot = self.acquire();
        let mut attempt = 0;
        loop {
            let outcome = self.send_once(&method, &url, body.as_deref());
            let again = attempt < self.retries
                && match &outcome {
                    Ok(reply) => match retry {
                        Retry::Idempotent => matches!(reply.status, 502..=504),
                        Retry::NotReceived => reply.status == 503,
                    },
                    Err(RemoteError::Refused { .. }) => true,
                    Err(RemoteError::Timeout { .. } | RemoteError::Dropped { .. } | RemoteError::Network { .. }) => {
                        retry == Retry::Idempotent
                    }
                    Err(_) => false,
                };
            if !again {
                let reply = outcome?;
                if !(200..300).contains(&reply.status) {
                    return Err(self.status_error(&url, &reply));
                }
                return Ok(reply);
            }
            attempt += 1;
            // 100 ms, 200 ms, 400 ms, ... with up to a quarter of jitter.
            let base = Duration::from_millis(100 << (attempt - 1).min(6));
            let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
            std::thread::sleep(base + jitter);
        }
    }

    fn send_once(&self, method: &reqwest::Method, url: &str, body: Option<&[u8]>) -> Result<Reply, RemoteError> {
        let mut request = self.client.request(method.clone(), url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec());
        }
        let response = request.send().map_err(|e| self.transport_error(url, &e))?;
        let status = response.status().as_u16();
        let server_ms = server_time_ms(response.headers());
        let body = response.bytes().map_err(|e| self.transport_error(url, &e))?.to_vec();
        Ok(Reply { status, body, server_ms })
    }

    fn json(&self, path: &str, reply: &Reply) -> Result<serde_json::Value, RemoteError> {
        serde_json::from_slice(&reply.body).map_err(|_| RemoteError::NotJson {
            url: self.url(path),
            status: reply.status,
            snippet: snippet(&reply.body),
        })
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = gate.next_ticket;
        gate.next_ticket += 1;
        while gate.turn != ticket || gate.in_flight >= self.limit {
            gate = self.freed.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
        gate.turn += 1;
        gate.in_flight += 1;
        // The next ticket may be able to go too.
        self.freed.notify_all();
        SlotGuard(self)
    }

    fn transport_error(&self, url: &str, error: &reqwest::Error) -> RemoteError {
        let detail = chain(error);
        let url = url.to_string();
        let refused = detail.to_ascii_lowercase().contains("connection refused");
        if error.is_timeout() {
            RemoteError::Timeout { url, seconds: self.timeout.as_secs_f64() }
        } else if refused {
            RemoteError::Refused { url }
        } else if error.is_connect() {
            RemoteError::Network { url, detail: format!("cannot connect: {detail}") }
        } else if error.is_body() || error.is_request() || error.is_decode() {
            RemoteError::Dropped { url, detail }
        } else {
            RemoteError::Network { url, detail }
        }
    }

    fn status_error(&self, url: &str, reply: &Reply) -> RemoteError {
        let message = server_message(&reply.body);
        let url = url.to_string();
        match StatusCode::from_u16(reply.status) {
            Ok(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                RemoteError::Unauthorized { url, status: reply.status, message, has_token: self.token.is_some() }
            }
            _ => RemoteError::Http { url, status: reply.status, message },
        }
    }
}

struct SlotGuard<'a>(&'a Endpoint);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut gate = self.0.gate.lock().unwrap_or_else(|e| e.into_inner());
        gate.in_flight = gate.in_flight.saturating_sub(1);
        self.0.freed.notify_all();
    }
}

/// The error and its causes on one line ("error sending request: … : Connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The message of an error body: Open Inference Protocol and TEI put it in `error`, FastAPI
/// servers (MLServer) in `detail`; anything else is shown as text, shortened.
pub(crate) fn server_message(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["error", "detail", "message"] {
            match json.get(key) {
                Some(serde_json::Value::String(s)) => return s.clone(),
                Some(other) if !other.is_null() => return other.to_string(),
                _ => {}
            }
        }
    }
    let text = snippet(body);
    if text.is_empty() {
        "(no message)".into()
    } else {
        text
    }
}

/// At most 200 characters of a body, control characters replaced.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(800)]);
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = cleaned.trim();
    match trimmed.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

/// The server's own time for a request, in ms: the `total` (else the largest) entry of a W3C
/// `Server-Timing` header, or TEI's `x-total-time`.
pub(crate) fn server_time_ms(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    let timing = headers.get_all("server-timing").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    if !timing.is_empty() {
        let entries: Vec<(String, f64)> = timing
            .split(',')
            .filter_map(|entry| {
                let mut parts = entry.split(';').map(str::trim);
                let name = parts.next()?.to_ascii_lowercase();
                let dur = parts.find_map(|p| p.strip_prefix("dur="))?.trim_matches('"').parse::<f64>().ok()?;
                dur.is_finite().then_some((name, dur))
            })
            .collect();
        if let Some((_, d)) = entries.iter().find(|(n, _)| n == "total") {
            return Some(*d);
        }
        if let Some(d) = entries.iter().map(|(_, d)| *d).reduce(f64::max) {
            return Some(d);
        }
    }
    headers
        .get("x-total-time")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn server_time_comes_from_server_timing_or_tei_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(server_time_ms(&h), None);
        h.insert("x-total-time", HeaderValue::from_static("12"));
        assert_eq!(server_time_ms(&h), Some(12.0));
        h.insert("server-timing", HeaderValue::from_static("queue;dur=0.5, infer;dur=2.25"));
        assert_eq!(server_time_ms(&h), Some(2.25));
        h.insert(
            "server-timing",
            HeaderValue::from_static("queue;dur=0.5, total;desc=\"all\";dur=3.5, infer;dur=2.25"),
        );
        assert_eq!(server_time_ms(&h), Some(3.5));
    }

    #[test]
    fn error_messages_come_from_the_usual_fields_or_the_text() {
        assert_eq!(server_message(br#"{"error":"Model x not found"}"#), "Model x not found");
        assert_eq!(server_message(br#"{"detail":"bad shape"}"#), "bad shape");
        assert_eq!(server_message(b"<html>\n<b>502</b></html>"), "<html> <b>502</b></html>");
        assert_eq!(server_message(b""), "(no message)");
        assert!(snippet(&[b'x'; 1000]).ends_with('…'));
    }
}
