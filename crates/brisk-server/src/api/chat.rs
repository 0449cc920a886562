//! `POST /v1/chat/completions` and `POST /v1/completions` (OpenAI), with
//! `stream: true` as server-sent events in OpenAI's chunk format.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use brisk_core::{
    ChatMessage, FinishReason, GenerateParams, GenerateRequest, Generation, Prompt, Request,
    ResponseFormat, TokenLogprob, TokenSink,
};
use brisk_engine::{CacheMode, CacheStatus, CancelOnDrop};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{AppError, Json};
use crate::AppState;

/// Used when the request sets no `max_tokens`.
const DEFAULT_MAX_TOKENS: usize = 512;

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Option<Value>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Option<Value>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// The parameters chat and completions share.
#[derive(Debug, Default, Deserialize)]
pub struct Sampling {
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    pub stop: Option<Value>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<usize>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Chat: a boolean; completions: the number of alternatives.
    pub logprobs: Option<Value>,
    pub top_logprobs: Option<usize>,
    pub response_format: Option<Value>,
}

/// OpenAI's `response_format`: text, any JSON object, or JSON valid under
/// a schema.
fn response_format(v: &Value) -> Result<Option<ResponseFormat>, AppError> {
    let bad = |m: String| AppError::bad(m, "response_format");
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let schema = v
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .ok_or_else(|| bad("response_format.json_schema.schema is required".into()))?;
            Ok(Some(ResponseFormat::JsonSchema(schema.to_string())))
        }
        other => Err(bad(format!(
            "response_format.type must be text, json_object or json_schema, got {other:?}"
        ))),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

fn required_model(model: Option<String>) -> Result<String, AppError> {
    model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| AppError::bad("'model' is required", "model"))
}

impl Sampling {
    fn params(&self) -> Result<GenerateParams, AppError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(AppError::bad("only n = 1 is supported", "n"));
        }
        // OpenAI's default temperature is 1.
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(AppError::bad(
                format!("temperature must be between 0 and 2, got {temperature}"),
                "temperature",
            ));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(AppError::bad(
                    format!("top_p must be in (0, 1], got {p}"),
                    "top_p",
                ));
            }
        }
        let max_tokens = self
            .max_completion_tokens
            .or(self.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS);
        if max_tokens == 0 {
            return Err(AppError::bad("max_tokens must be at least 1", "max_tokens"));
        }
        let stop = match &self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        AppError::bad("stop must be a string or a list of strings", "stop")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(AppError::bad(
                    "stop must be a string or a list of strings",
                    "stop",
                ))
            }
        };
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(AppError::bad(
                "stop takes up to 4 non-empty strings",
                "stop",
            ));
        }
        Ok(GenerateParams {
            max_tokens,
            temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: self.seed,
            stop,
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            logprobs: self.logprobs()?,
            response_format: match &self.response_format {
                None | Some(Value::Null) => None,
                Some(v) => response_format(v)?,
            },
            // Set by the registry from the model id (`X:NAME`).
            adapter: None,
        })
    }

    /// `logprobs` (chat: true/false; completions: how many alternatives)
    /// and `top_logprobs` (chat, 0-20) as the number of alternatives.
    fn logprobs(&self) -> Result<Option<usize>, AppError> {
        let top = self.top_logprobs;
        if top.is_some_and(|n| n > 20) {
            return Err(AppError::bad(
                "top_logprobs must be between 0 and 20",
                "top_logprobs",
            ));
        }
        match &self.logprobs {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {
                if top.is_some_and(|n| n > 0) {
                    return Err(AppError::bad(
                        "top_logprobs needs logprobs: true",
                        "top_logprobs",
                    ));
                }
                Ok(None)
            }
            Some(Value::Bool(true)) => Ok(Some(top.unwrap_or(0))),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(n) if n <= 5 => Ok(Some(n as usize)),
                _ => Err(AppError::bad(
                    "logprobs must be between 0 and 5",
                    "logprobs",
                )),
            },
            Some(_) => Err(AppError::bad("logprobs must be a boolean", "logprobs")),
        }
    }
}

/// Validates OpenAI `messages`: roles and text content (string or text parts).
pub fn parse_messages(messages: Option<Value>) -> Result<Vec<ChatMessage>, AppError> {
    let bad = |m: String| AppError::bad(m, "messages");
    let Some(Value::Array(items)) = messages else {
        return Err(bad("'messages' must be a non-empty list".into()));
    };
    if items.is_empty() {
        return Err(bad("'messages' must be a non-empty list".into()));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m["role"]
                .as_str()
                .ok_or_else(|| bad(format!("messages[{i}].role is required")))?;
            let role = match role {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(bad(format!(
                    "messages[{i}].role '{other}' is not one of system, developer, user, assistant"
                )))
                }
            };
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                        (Some("text"), Some(t)) => Ok(t),
                        _ => Err(bad(format!(
                            "messages[{i}].content: only text parts are supported"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(""),
                Value::Null if role == "assistant" => String::new(),
                _ => return Err(bad(format!("messages[{i}].content must be a string"))),
            };
            Ok(ChatMessage {
                role: role.to_string(),
                content,
            })
        })
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_id(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}{n:04x}", t as u64)
}

fn usage(g: &Generation) -> Value {
    json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "total_tokens": g.prompt_tokens + g.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": g.cached_tokens },
    })
}

/// OpenAI's chat `logprobs` object for the generated tokens.
fn chat_logprobs(lps: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = lps
        .iter()
        .map(|lp| {
            json!({
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": lp.bytes,
                "top_logprobs": lp.top.iter().map(|(t, l)| json!({
                    "token": t, "logprob": l, "bytes": t.as_bytes(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "content": content })
}

/// The legacy completions `logprobs` object.
fn completion_logprobs(lps: &[TokenLogprob]) -> Value {
    json!({
        "tokens": lps.iter().map(|lp| lp.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": lps.iter().map(|lp| lp.logprob).collect::<Vec<_>>(),
        "top_logprobs": lps.iter().map(|lp| {
            lp.top.iter().map(|(t, l)| (t.clone(), json!(l))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
    })
}

fn timings(g: &Generation, total_ms: f64) -> Value {
    let per_s = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    json!({
        "prompt_n": g.prompt_tokens,
        "prompt_ms": g.prompt_eval_s * 1000.0,
        "prompt_per_second": per_s(g.prompt_tokens, g.prompt_eval_s),
        "predicted_n": g.completion_tokens,
        "predicted_ms": g.eval_s * 1000.0,
        "predicted_per_second": per_s(g.completion_tokens, g.eval_s),
        // Waiting for the model (load, queue) is what is left of the total.
        "wait_ms": (total_ms - (g.prompt_eval_s + g.eval_s) * 1000.0).max(0.0),
        "total_ms": total_ms,
    })
}

fn finish(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completion,
}

impl Kind {
    fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn choice(self, text: &str, finish_reason: Option<&str>, first: bool, chunk: bool) -> Value {
        match (self, chunk) {
            (Kind::Chat, false) => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text },
                "finish_reason": finish_reason,
                "logprobs": null,
            }),
            (Kind::Chat, true) => {
                let delta = if first {
                    json!({ "role": "assistant", "content": text })
                } else if finish_reason.is_some() {
                    json!({})
                } else {
                    json!({ "content": text })
                };
                json!({ "index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null })
            }
            (Kind::Completion, _) => json!({
                "index": 0, "text": text, "finish_reason": finish_reason, "logprobs": null,
            }),
        }
    }
}

pub async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ChatRequest>,
) -> Result<Response, AppError> {
    let model = required_model(req.model)?;
    let messages = parse_messages(req.messages)?;
    let limits = &state.config.limits;
    limits.check_list(
        "messages",
        limits.max_messages,
        messages.iter().map(|m| m.content.as_str()),
    )?;
    run(
        state,
        model,
        Prompt::Chat(messages),
        req.sampling,
        Kind::Chat,
        super::cache::mode(&headers),
    )
    .await
}

pub async fn completion(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<CompletionRequest>,
) -> Result<Response, AppError> {
    let model = required_model(req.model)?;
    let prompt = match req.prompt {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Array(a)) if a.len() == 1 && a[0].as_str().is_some_and(|s| !s.is_empty()) => {
            a[0].as_str().unwrap_or_default().to_string()
        }
        _ => {
            return Err(AppError::bad(
                "'prompt' must be a non-empty string (one prompt per request)",
                "prompt",
            ))
        }
    };
    state
        .config
        .limits
        .check_chars(|| "'prompt'".into(), &prompt, "prompt")?;
    run(
        state,
        model,
        Prompt::Text(prompt),
        req.sampling,
        Kind::Completion,
        super::cache::mode(&headers),
    )
    .await
}

async fn run(
    state: AppState,
    model: String,
    prompt: Prompt,
    sampling: Sampling,
    kind: Kind,
    mode: CacheMode,
) -> Result<Response, AppError> {
    let params = sampling.params()?;
    let wants_logprobs = params.logprobs.is_some();
    if wants_logprobs && sampling.stream {
        return Err(AppError::bad(
            "logprobs are only returned without stream",
            "logprobs",
        ));
    }
    if params.max_tokens > state.config.limits.max_tokens {
        return Err(AppError::bad(
            format!(
                "max_tokens is {}; at most {} are accepted",
                params.max_tokens, state.config.limits.max_tokens
            ),
            "max_tokens",
        ));
    }
    let id = new_id(match kind {
        Kind::Chat => "chatcmpl",
        Kind::Completion => "cmpl",
    });
    let created = now_secs();
    let started = Instant::now();
    if !sampling.stream {
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancelled.clone());
        let sink: TokenSink = Box::new(move |_| !cancelled.load(Ordering::Relaxed));
        let (g, status) = generate(&state, &model, prompt, params, sink, mode).await?;
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut choice = kind.choice(&g.text, Some(finish(g.finish_reason)), false, false);
        if wants_logprobs {
            choice["logprobs"] = match kind {
                Kind::Chat => chat_logprobs(&g.logprobs),
                Kind::Completion => completion_logprobs(&g.logprobs),
            };
        }
        let body = axum::Json(json!({
            "id": id,
            "object": kind.object(false),
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage(&g),
            "timings": timings(&g, total_ms),
        }));
        return Ok(super::cache::tag(body.into_response(), status));
    }

    // Streaming: pieces flow from the model thread through this channel to
    // the SSE body. When the client goes away the receiver is dropped, the
    // sink's send fails, and the backend stops generating.
    let include_usage = sampling.stream_options.is_some_and(|o| o.include_usage);
    // The header goes out before the result exists: `miss` when the result
    // will be stored, `bypass` when it will not, `hit` (below) when the
    // whole answer is already there.
    let probe = Request::Generate(GenerateRequest {
        prompt: prompt.clone(),
        params: params.clone(),
        sink: None,
    });
    let mut status = if mode == CacheMode::Use && state.registry.would_cache(&model, &probe, mode) {
        CacheStatus::Miss
    } else {
        CacheStatus::Bypass
    };
    drop(probe);
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let piece_tx = tx.clone();
    let sink: TokenSink =
        Box::new(move |piece: &str| piece_tx.send(Msg::Piece(piece.to_string())).is_ok());
    let task_model = model.clone();
    tokio::spawn(async move {
        let result = generate(&state, &task_model, prompt, params, sink, mode).await;
        let _ = tx.send(Msg::Done(result));
    });
    // Errors before the first token (unknown model, full queue, prompt too
    // long) are still plain HTTP errors with their status.
    let first = rx.recv().await;
    let first = match first {
        Some(Msg::Done(Err(e))) => return Err(e),
        other => other,
    };
    if let Some(Msg::Done(Ok((_, CacheStatus::Hit)))) = &first {
        status = CacheStatus::Hit;
    }
    let chunk = move |choices: Value, usage: Option<Value>| -> Event {
        let mut v = json!({
            "id": id, "object": kind.object(true), "created": created, "model": model, "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        Event::default().data(v.to_string())
    };
    let mut sent_first = false;
    let mut to_events = move |msg: Msg| -> Vec<Event> {
        match msg {
            Msg::Piece(p) => {
                let ev = chunk(json!([kind.choice(&p, None, !sent_first, true)]), None);
                sent_first = true;
                vec![ev]
            }
            Msg::Done(Ok((g, _))) => {
                let mut evs = Vec::new();
                if !sent_first {
                    evs.push(chunk(json!([kind.choice("", None, true, true)]), None));
                }
                evs.push(chunk(
                    json!([kind.choice("", Some(finish(g.finish_reason)), false, true)]),
                    None,
                ));
                if include_usage {
                    evs.push(chunk(json!([]), Some(usage(&g))));
                }
                evs.push(Event::default().data("[DONE]"));
                evs
            }
            // Mid-stream failure: OpenAI-shaped error object, then the end.
            Msg::Done(Err(e)) => vec![
                Event::default().data(
                    json!({ "error": { "message": e.to_string(), "type": "server_error" } })
                        .to_string(),
                ),
                Event::default().data("[DONE]"),
            ],
        }
    };
    let head = match first {
        // A cached answer has no pieces of its own: it goes out whole.
        Some(Msg::Done(Ok((g, CacheStatus::Hit)))) => {
            let mut evs = to_events(Msg::Piece(g.text.clone()));
            evs.extend(to_events(Msg::Done(Ok((g, CacheStatus::Hit)))));
            evs
        }
        Some(m) => to_events(m),
        None => Vec::new(),
    };
    let stream = futures_util::stream::iter(head.into_iter().map(Ok::<_, Infallible>)).chain(
        futures_util::stream::unfold((rx, to_events), |(mut rx, mut f)| async move {
            let msg = rx.recv().await?;
            let evs = f(msg);
            Some((
                futures_util::stream::iter(evs.into_iter().map(Ok::<_, Infallible>)),
                (rx, f),
            ))
        })
        .flatten(),
    );
    Ok(super::cache::tag(Sse::new(stream).into_response(), status))
}

/// What the generation task reports to the streaming response.
enum Msg {
    Piece(String),
    Done(Result<(Generation, CacheStatus), AppError>),
}

async fn generate(
    state: &AppState,
    model: &str,
    prompt: Prompt,
    params: GenerateParams,
    sink: TokenSink,
    mode: CacheMode,
) -> Result<(Generation, CacheStatus), AppError> {
    let req = Request::Generate(GenerateRequest {
        prompt,
        params,
        sink: Some(sink),
    });
    match state.registry.infer_with(model, req, mode).await? {
        (brisk_core::Response::Generate(g), status) => Ok((g, status)),
        other => Err(AppError::Engine(brisk_engine::EngineError::Backend(
            brisk_core::BackendError::Inference(format!("unexpected reply {other:?}")),
        ))),
    }
}
