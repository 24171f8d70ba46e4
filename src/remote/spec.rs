//! What a user writes to name a remote model: `oip+http(s)://HOST:PORT/[PREFIX/]MODEL[@VERSION]`
//! or `tei+http(s)://HOST:PORT[/PREFIX]`, with options in the query string.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

/// The wire protocol a remote model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    /// The Open Inference Protocol v2 REST API (KServe, Triton, Seldon MLServer, `modeldeck serve`).
    Oip,
    /// Hugging Face text-embeddings-inference (`/embed`, `/predict`, `/info`).
    Tei,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Oip => "Open Inference Protocol v2",
            Self::Tei => "text-embeddings-inference",
        }
    }
    fn scheme_prefix(self) -> &'static str {
        match self {
            Self::Oip => "oip+",
            Self::Tei => "tei+",
        }
    }
}

/// What a BYTES input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BytesKind {
    Text,
    /// Encoded image files (PNG is sent).
    Image,
}

/// What an output holds, when its name does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Probabilities,
    Logits,
    Embedding,
}

impl OutputKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Probabilities => "probabilities",
            Self::Logits => "logits",
            Self::Embedding => "embedding",
        }
    }
}

/// The options of a remote source (its query string).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteOptions {
    /// A model folder whose config.json (labels) and preprocessor_config.json describe the
    /// remote model.
    pub card: Option<PathBuf>,
    /// The preprocessing for servers that take image tensors (overrides the card's).
    pub preprocessor: Option<PathBuf>,
    /// Class names in output order (overrides the server's and the card's).
    pub labels: Option<Vec<String>>,
    /// The input and output tensors to use when the metadata lists several.
    pub input: Option<String>,
    pub output: Option<String>,
    /// What a BYTES input holds when neither its name nor its metadata say.
    pub kind: Option<BytesKind>,
    /// What the output holds when its name does not say.
    pub output_kind: Option<OutputKind>,
    /// The environment variable holding a bearer token. Only its name is ever stored.
    pub token_env: Option<String>,
    pub timeout: Duration,
    /// Requests in flight at once to this endpoint.
    pub concurrency: usize,
    /// Extra attempts for idempotent calls (and for inference the server never received).
    pub retries: u32,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            card: None,
            preprocessor: None,
            labels: None,
            input: None,
            output: None,
            kind: None,
            output_kind: None,
            token_env: None,
            timeout: Duration::from_secs(30),
            concurrency: 8,
            retries: 2,
        }
    }
}

const KEYS: &str =
    "card, preprocessor, labels, input, output, kind, output_kind, token_env, timeout, concurrency, retries";

/// A parsed remote source.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSpec {
    pub protocol: Protocol,
    /// `http(s)://host:port/prefix/`, always ending in `/`: request paths are joined onto it.
    pub base: Url,
    /// The model name and version (Open Inference Protocol only).
    pub model: Option<String>,
    pub version: Option<String>,
    pub options: RemoteOptions,
    /// What the user wrote, trimmed (how the source is shown and stored).
    text: String,
}

impl RemoteSpec {
    /// True when `text` names a remote source (so parsing errors are about the URL, not a path).
    pub fn is_remote(text: &str) -> bool {
        let lower = text.trim_start().to_ascii_lowercase();
        lower.starts_with("oip+") || lower.starts_with("tei+")
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        let protocol = if lower.starts_with("oip+") {
            Protocol::Oip
        } else if lower.starts_with("tei+") {
            Protocol::Tei
        } else {
            return Err(format!("`{text}` is not a remote source (oip+http(s)://… or tei+http(s)://…)"));
        };
        let rest = &text[protocol.scheme_prefix().len()..];
        let mut url = Url::parse(rest)
            .map_err(|e| format!("`{text}` is not a valid URL after `{}`: {e}", protocol.scheme_prefix()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}`: the scheme after `{}` must be http or https", protocol.scheme_prefix()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{text}` has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "`{text}` carries credentials in the URL; put a bearer token in an environment variable and name it with ?token_env=VAR"
            ));
        }
        let mut options = RemoteOptions::default();
        for (key, value) in url.query_pairs() {
            let value = value.trim().to_string();
            let invalid = |what: &str| format!("`{text}`: option `{key}={value}` {what}");
            match key.as_ref() {
                "card" => options.card = Some(PathBuf::from(&value)),
                "preprocessor" => options.preprocessor = Some(PathBuf::from(&value)),
                "labels" => {
                    let labels: Vec<String> = value.split(',').map(|l| l.trim().to_string()).collect();
                    if labels.iter().any(String::is_empty) {
                        return Err(invalid("has an empty label (write labels=a,b,c)"));
                    }
                    options.labels = Some(labels);
                }
                "input" => options.input = Some(value),
                "output" => options.output = Some(value),
                "kind" => {
                    options.kind = Some(match value.as_str() {
                        "text" => BytesKind::Text,
                        "image" => BytesKind::Image,
                        _ => return Err(invalid("must be text or image")),
                    })
                }
                "output_kind" => {
                    options.output_kind = Some(match value.as_str() {
                        "probabilities" | "probs" => OutputKind::Probabilities,
                        "logits" => OutputKind::Logits,
                        "embedding" | "embeddings" => OutputKind::Embedding,
                        _ => return Err(invalid("must be probabilities, logits or embedding")),
                    })
                }
                "token_env" => {
                    if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(invalid("must name an environment variable (letters, digits, _)"));
                    }
                    options.token_env = Some(value)
                }
                "timeout" => options.timeout = parse_duration(&value).ok_or_else(|| invalid("is not a duration like 30, 30s or 500ms"))?,
                "concurrency" => {
                    options.concurrency =
                        value.parse().ok().filter(|&n: &usize| (1..=1024).contains(&n)).ok_or_else(|| invalid("must be 1 to 1024"))?
                }
                "retries" => options.retries = value.parse().ok().filter(|&n: &u32| n <= 10).ok_or_else(|| invalid("must be 0 to 10"))?,
                "token" | "access_token" | "api_key" => {
                    return Err(format!(
                        "`{text}`: never put a token in the source (it would be stored with the slots and logs); set it in an environment variable and pass ?token_env=VAR"
                    ))
                }
                other => return Err(format!("`{text}`: unknown option `{other}` (known: {KEYS})")),
            }
        }
        url.set_query(None);
        url.set_fragment(None);
        let (model, version) = match protocol {
            Protocol::Tei => (None, None),
            Protocol::Oip => {
                let segments: Vec<String> =
                    url.path_segments().map(|s| s.map(str::to_string).collect()).unwrap_or_default();
                let Some(last) = segments.iter().rev().find(|s| !s.is_empty()).cloned() else {
                    return Err(format!("`{text}` names no model: write oip+http://HOST:PORT/MODEL[@VERSION]"));
                };
                let last = percent_decode(&last);
                let (model, version) = match last.split_once('@') {
                    Some((m, v)) if !m.is_empty() && !v.is_empty() => (m.to_string(), Some(v.to_string())),
                    Some(_) => return Err(format!("`{text}`: write MODEL@VERSION with both parts")),
                    None => (last.clone(), None),
                };
                let keep = segments.len() - 1 - segments.iter().rev().position(|s| !s.is_empty()).unwrap_or(0);
                let prefix: Vec<&str> = segments[..keep].iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
                url.set_path(&format!("/{}", prefix.iter().map(|s| format!("{s}/")).collect::<String>()));
                (Some(model), version)
            }
        };
        if protocol == Protocol::Tei && !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Self { protocol, base: url, model, version, options, text: text.to_string() })
    }

    /// The endpoint without options: what the card and errors show.
    pub fn endpoint(&self) -> String {
        match (&self.model, &self.version) {
            (Some(m), Some(v)) => format!("{}{m}@{v}", self.base),
            (Some(m), None) => format!("{}{m}", self.base),
            _ => self.base.to_string().trim_end_matches('/').to_string(),
        }
    }

    /// The path of a model-level Open Inference Protocol resource (`v2/models/m[/versions/v]`).
    pub(crate) fn model_path(&self) -> String {
        let model = self.model.as_deref().unwrap_or_default();
        let mut path = format!("v2/models/{}", path_segment(model));
        if let Some(v) = &self.version {
            path.push_str(&format!("/versions/{}", path_segment(v)));
        }
        path
    }
}

impl fmt::Display for RemoteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `30`, `30s`, `1.5s`, `500ms`.
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let seconds = number.trim().parse::<f64>().ok()? * scale;
    (seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0).then(|| Duration::from_secs_f64(seconds))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

fn path_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_models_versions_prefixes_and_options() {
        let s = RemoteSpec::parse("oip+http://127.0.0.1:8080/digits-sklearn").unwrap();
        assert_eq!(s.protocol, Protocol::Oip);
        assert_eq!(s.base.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(s.model.as_deref(), Some("digits-sklearn"));
        assert_eq!(s.model_path(), "v2/models/digits-sklearn");
        let s = RemoteSpec::parse(
            "oip+https://gw.example.com/ns/kserve/my-model@3?labels=a,b&timeout=500ms&token_env=GW_TOKEN",
        )
        .unwrap();
        assert_eq!(s.base.as_str(), "https://gw.example.com/ns/kserve/");
        assert_eq!((s.model.as_deref(), s.version.as_deref()), (Some("my-model"), Some("3")));
        assert_eq!(s.model_path(), "v2/models/my-model/versions/3");
        assert_eq!(s.options.labels, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(s.options.timeout, Duration::from_millis(500));
        assert_eq!(s.options.token_env.as_deref(), Some("GW_TOKEN"));
        assert_eq!(s.endpoint(), "https://gw.example.com/ns/kserve/my-model@3");
        assert_eq!(
            s.to_string(),
            "oip+https://gw.example.com/ns/kserve/my-model@3?labels=a,b&timeout=500ms&token_env=GW_TOKEN"
        );
        let t = RemoteSpec::parse("tei+http://localhost:3000").unwrap();
        assert_eq!((t.protocol, t.base.as_str(), t.model.clone()), (Protocol::Tei, "http://localhost:3000/", None));
        assert_eq!(t.endpoint(), "http://localhost:3000");
    }

    #[test]
    fn refuses_what_it_cannot_use_with_a_reason() {
        for (text, needle) in [
            ("oip+http://127.0.0.1:8080", "names no model"),
            ("oip+http://127.0.0.1:8080/", "names no model"),
            ("oip+ftp://host/m", "http or https"),
            ("oip+http://host/m@", "both parts"),
            ("oip+http://host/m?colour=red", "unknown option `colour`"),
            ("oip+http://host/m?token=abc", "never put a token"),
            ("oip+http://user:pw@host/m", "credentials"),
            ("oip+http://host/m?timeout=-1", "duration"),
            ("oip+http://host/m?concurrency=0", "1 to 1024"),
            ("oip+http://host/m?kind=audio", "text or image"),
            ("oip+http://host/m?labels=a,,b", "empty label"),
            ("oip+not a url", "not a valid URL"),
        ] {
            let error = RemoteSpec::parse(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
