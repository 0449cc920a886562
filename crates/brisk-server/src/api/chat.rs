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
use brisk_core::tools::{Part, ToolCallSplitter};
use brisk_core::{
    ChatMessage, FinishReason, GenerateParams, GenerateRequest, Generation, Prompt, Request,
    ResponseFormat, TokenLogprob, TokenSink, Tool, ToolCall, ToolChoice,
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16}))]
pub struct ChatRequest {
    #[schema(required = true)]
    pub model: Option<String>,
    /// `{role, content}` objects (system, user, assistant, tool), with
    /// `tool_calls` and `tool_call_id` for tool use.
    #[schema(required = true, value_type = Vec<Object>)]
    pub messages: Option<Value>,
    /// OpenAI function tools: `{type: "function", function: {name, description, parameters}}`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// Only `["text"]`.
    pub modalities: Option<Vec<String>>,
    /// brisk keeps no completions: only `false`.
    pub store: Option<bool>,
    /// brisk has one tier: `auto` or `default`.
    pub service_tier: Option<String>,
    /// Informational; the prefix cache needs no key.
    pub metadata: Option<Value>,
    pub prompt_cache_key: Option<String>,
    pub safety_identifier: Option<String>,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Fields beyond these: refused by name when OpenAI defines them
    /// ([`super::openai_fields`]), else ignored.
    #[serde(flatten)]
    #[schema(ignore)]
    pub rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"model": "smollm2-135m-instruct", "prompt": "The capital of France is", "max_tokens": 8}))]
pub struct CompletionRequest {
    #[schema(required = true)]
    pub model: Option<String>,
    /// A string (or a list of one string).
    #[schema(required = true)]
    pub prompt: Option<Value>,
    /// Only 1 (one candidate per request).
    pub best_of: Option<usize>,
    #[serde(flatten)]
    pub sampling: Sampling,
    #[serde(flatten)]
    #[schema(ignore)]
    pub rest: serde_json::Map<String, Value>,
}

/// The parameters chat and completions share.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
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
    /// `{"type": "text"}`, `{"type": "json_object"}` or
    /// `{"type": "json_schema", "json_schema": {"schema": {...}}}` (grammar-constrained).
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
    /// Token id (as a string) to a bias in [-100, 100].
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    /// An end-user id: informational.
    pub user: Option<String>,
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

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
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
    /// How the answer to these sampling options is shaped.
    fn output(&self, kind: Kind, tools: Option<Vec<String>>) -> Output {
        Output {
            kind,
            tools,
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
        }
    }

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
            logit_bias: self.logit_bias()?,
            ..GenerateParams::default()
        })
    }

    /// OpenAI's `logit_bias`: `{"token id": bias}`.
    fn logit_bias(&self) -> Result<Vec<(i32, f32)>, AppError> {
        let Some(map) = &self.logit_bias else {
            return Ok(Vec::new());
        };
        map.iter()
            .map(|(k, v)| {
                let token: i32 = k.parse().map_err(|_| {
                    AppError::bad(
                        format!("logit_bias keys must be token ids, got '{k}'"),
                        "logit_bias",
                    )
                })?;
                let bias = v
                    .as_f64()
                    .filter(|b| (-100.0..=100.0).contains(b))
                    .ok_or_else(|| {
                        AppError::bad(
                            format!("logit_bias values must be numbers in [-100, 100], got {v}"),
                            "logit_bias",
                        )
                    })?;
                Ok((token, bias as f32))
            })
            .collect()
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

/// Validates OpenAI `messages`: roles, text content (a string or text
/// parts), an assistant's `tool_calls` and a tool result's `tool_call_id`.
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
                "tool" => "tool",
                other => {
                    return Err(bad(format!(
                    "messages[{i}].role '{other}' is not one of system, developer, user, assistant, tool"
                )))
                }
            };
            let tool_calls = match &m["tool_calls"] {
                Value::Null => Vec::new(),
                Value::Array(calls) if role == "assistant" => calls
                    .iter()
                    .enumerate()
                    .map(|(j, c)| parse_history_call(c).map_err(|why| bad(format!("messages[{i}].tool_calls[{j}]: {why}"))))
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(bad(format!(
                        "messages[{i}].tool_calls must be a list, on assistant messages only"
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
            let tool_call_id = match (&m["tool_call_id"], role) {
                (Value::String(id), "tool") if !id.is_empty() => Some(id.clone()),
                (_, "tool") => {
                    return Err(bad(format!(
                        "messages[{i}] is a tool result without a tool_call_id"
                    )))
                }
                _ => None,
            };
            let mut msg = ChatMessage::new(role.to_string(), content);
            msg.tool_calls = tool_calls;
            msg.tool_call_id = tool_call_id;
            msg.name = match &m["name"] {
                Value::Null => None,
                Value::String(n) => Some(n.clone()),
                _ => return Err(bad(format!("messages[{i}].name must be a string"))),
            };
            Ok(msg)
        })
        .collect()
}

/// One call of an earlier assistant message: `{id, type: "function",
/// function: {name, arguments}}` with the arguments as a JSON string.
fn parse_history_call(c: &Value) -> Result<ToolCall, String> {
    if c["type"].as_str().is_some_and(|t| t != "function") {
        return Err("type must be 'function'".into());
    }
    let name = c["function"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("function.name is required")?;
    let arguments = match &c["function"]["arguments"] {
        Value::String(a) => a.clone(),
        Value::Null => "{}".to_string(),
        _ => return Err("function.arguments must be a JSON string".into()),
    };
    Ok(ToolCall {
        id: c["id"].as_str().unwrap_or_default().to_string(),
        name: name.to_string(),
        arguments,
    })
}

/// OpenAI's `tools`: function definitions with JSON-schema parameters.
fn parse_tools(tools: Option<&Value>) -> Result<Vec<Tool>, AppError> {
    let bad = |m: String| AppError::bad(m, "tools");
    let items = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad("tools must be a list".into())),
    };
    let mut out: Vec<Tool> = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        if t["type"].as_str() != Some("function") {
            return Err(bad(format!(
                "tools[{i}].type must be 'function' (the only tool type brisk runs)"
            )));
        }
        let f = &t["function"];
        let name = f["name"].as_str().unwrap_or_default();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(format!(
                "tools[{i}].function.name must be 1-64 letters, digits, '_' or '-', got '{name}'"
            )));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(bad(format!(
                "tools: the function '{name}' is defined twice"
            )));
        }
        let parameters = match &f["parameters"] {
            // OpenAI: omitted parameters means a function without any.
            Value::Null => json!({"type": "object", "properties": {}}),
            p @ Value::Object(_) => p.clone(),
            _ => {
                return Err(bad(format!(
                "tools[{i}].function.parameters (function '{name}') must be a JSON schema object"
            )))
            }
        };
        out.push(Tool {
            name: name.to_string(),
            description: f["description"].as_str().map(str::to_string),
            parameters: parameters.to_string(),
        });
    }
    Ok(out)
}

/// OpenAI's `tool_choice`: `auto`, `none`, `required` or a named function.
fn parse_tool_choice(choice: Option<&Value>, tools: &[Tool]) -> Result<ToolChoice, AppError> {
    let bad = |m: String| AppError::bad(m, "tool_choice");
    let choice = match choice {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(format!(
                    "tool_choice must be auto, none, required or a function, got '{other}'"
                )))
            }
        },
        Some(v) if v["type"].as_str() == Some("function") => {
            let name = v["function"]["name"]
                .as_str()
                .ok_or_else(|| bad("tool_choice.function.name is required".into()))?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(bad(format!(
                    "tool_choice names the function '{name}', which is not in tools"
                )));
            }
            ToolChoice::Function(name.to_string())
        }
        Some(_) => {
            return Err(bad(
                "tool_choice must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\": ...}}".into(),
            ))
        }
    };
    if tools.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err(bad(
            "tool_choice asks for a call but no tools are given".into()
        ));
    }
    Ok(choice)
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

#[utoipa::path(post, path = "/v1/chat/completions", tag = "generation",
    request_body = ChatRequest,
    responses((status = 200, description = "The completion; with `stream: true`, OpenAI's `chat.completion.chunk` events then `data: [DONE]`", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")),
               content((crate::openapi::schemas::ChatCompletion = "application/json"), (crate::openapi::schemas::SseEvent = "text/event-stream"))),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ChatRequest>,
) -> Result<Response, AppError> {
    super::openai_fields::refuse(super::openai_fields::CHAT, &req.rest)?;
    let model = required_model(req.model)?;
    let messages = parse_messages(req.messages)?;
    let limits = &state.config.limits;
    limits.check_list(
        "messages",
        limits.max_messages,
        messages.iter().map(|m| m.content.as_str()),
    )?;
    if req
        .modalities
        .as_ref()
        .is_some_and(|m| m.iter().any(|m| m != "text"))
    {
        return Err(AppError::bad(
            "modalities: brisk answers in text only",
            "modalities",
        ));
    }
    if req.store == Some(true) {
        return Err(AppError::bad(
            "store: brisk keeps no completions (store must be false)",
            "store",
        ));
    }
    if let Some(tier) = req.service_tier.as_deref() {
        if !matches!(tier, "auto" | "default") {
            return Err(AppError::bad(
                format!("service_tier: brisk has one tier (auto or default), got '{tier}'"),
                "service_tier",
            ));
        }
    }
    let mut params = req.sampling.params()?;
    params.tools = parse_tools(req.tools.as_ref())?;
    params.tool_choice = parse_tool_choice(req.tool_choice.as_ref(), &params.tools)?;
    params.parallel_tool_calls = req.parallel_tool_calls.unwrap_or(true);
    let calls_tools = !params.tools.is_empty() && params.tool_choice != ToolChoice::None;
    if calls_tools && params.response_format.is_some() {
        return Err(AppError::bad(
            "response_format cannot be combined with tools (unless tool_choice is none)",
            "response_format",
        ));
    }
    let output = req.sampling.output(
        Kind::Chat,
        calls_tools.then(|| params.tools.iter().map(|t| t.name.clone()).collect()),
    );
    run(
        state,
        model,
        Prompt::Chat(messages),
        params,
        output,
        super::cache::mode(&headers),
    )
    .await
}

#[utoipa::path(post, path = "/v1/completions", tag = "generation",
    request_body = CompletionRequest,
    responses((status = 200, description = "The completion; with `stream: true`, `text_completion` chunk events then `data: [DONE]`", headers(("x-brisk-cache" = String, description = "hit, miss or bypass")),
               content((crate::openapi::schemas::TextCompletion = "application/json"), (crate::openapi::schemas::SseEvent = "text/event-stream"))),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn completion(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<CompletionRequest>,
) -> Result<Response, AppError> {
    super::openai_fields::refuse(super::openai_fields::COMPLETIONS, &req.rest)?;
    let model = required_model(req.model)?;
    if req.best_of.is_some_and(|n| n != 1) {
        return Err(AppError::bad("only best_of = 1 is supported", "best_of"));
    }
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
    let params = req.sampling.params()?;
    let output = req.sampling.output(Kind::Completion, None);
    run(
        state,
        model,
        Prompt::Text(prompt),
        params,
        output,
        super::cache::mode(&headers),
    )
    .await
}

/// How the answer is shaped.
struct Output {
    kind: Kind,
    /// The text may hold calls of these offered functions, to be taken
    /// apart; `None` without tools.
    tools: Option<Vec<String>>,
    stream: bool,
    include_usage: bool,
}

/// A non-streaming chat choice whose text may hold calls of `names`.
fn tool_choice_message(g: &Generation, names: &[String]) -> Value {
    let (content, calls) = ToolCallSplitter::split(&g.text, names);
    if calls.is_empty() {
        return json!({
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": finish(g.finish_reason),
            "logprobs": null,
        });
    }
    let calls: Vec<Value> = calls
        .into_iter()
        .map(|(name, arguments)| call_json(None, &name, &arguments))
        .collect();
    json!({
        "index": 0,
        "message": {
            "role": "assistant",
            "content": if content.trim().is_empty() { Value::Null } else { Value::from(content) },
            "tool_calls": calls,
        },
        "finish_reason": "tool_calls",
        "logprobs": null,
    })
}

/// One tool call as OpenAI writes it (with `index` in stream deltas).
fn call_json(index: Option<usize>, name: &str, arguments: &str) -> Value {
    let mut v = json!({
        "id": new_id("call"),
        "type": "function",
        "function": { "name": name, "arguments": arguments },
    });
    if let Some(i) = index {
        v["index"] = json!(i);
    }
    v
}

async fn run(
    state: AppState,
    model: String,
    prompt: Prompt,
    params: GenerateParams,
    output: Output,
    mode: CacheMode,
) -> Result<Response, AppError> {
    let kind = output.kind;
    let wants_logprobs = params.logprobs.is_some();
    if wants_logprobs && output.stream {
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
    if !output.stream {
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancelled.clone());
        let sink: TokenSink = Box::new(move |_| !cancelled.load(Ordering::Relaxed));
        let (g, status) = generate(&state, &model, prompt, params, sink, mode).await?;
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut choice = if let Some(names) = &output.tools {
            tool_choice_message(&g, names)
        } else {
            kind.choice(&g.text, Some(finish(g.finish_reason)), false, false)
        };
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
    let include_usage = output.include_usage;
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
    // With tools, the text is taken apart as it comes: prose goes out as
    // content deltas, each call as one `tool_calls` delta once it is whole.
    let mut splitter = output.tools.map(ToolCallSplitter::new);
    let mut calls_out = 0usize;
    let mut to_events =
        move |msg: Msg| -> Vec<Event> {
            let mut evs = Vec::new();
            let (parts, done) = match msg {
                Msg::Piece(p) => match splitter.as_mut() {
                    Some(s) => (s.push(&p), None),
                    None => {
                        evs.push(chunk(
                            json!([kind.choice(&p, None, !sent_first, true)]),
                            None,
                        ));
                        sent_first = true;
                        (Vec::new(), None)
                    }
                },
                Msg::Done(result) => (
                    splitter
                        .as_mut()
                        .map(ToolCallSplitter::finish)
                        .unwrap_or_default(),
                    Some(result),
                ),
            };
            for part in parts {
                let mut delta = match part {
                    Part::Content(c) => json!({ "content": c }),
                    Part::Call { name, arguments } => {
                        calls_out += 1;
                        json!({ "tool_calls": [call_json(Some(calls_out - 1), &name, &arguments)] })
                    }
                };
                if !sent_first {
                    delta["role"] = json!("assistant");
                    sent_first = true;
                }
                evs.push(chunk(
                json!([{ "index": 0, "delta": delta, "finish_reason": null, "logprobs": null }]),
                None,
            ));
            }
            match done {
                None => {}
                Some(Ok((g, _))) => {
                    let reason = if calls_out > 0 {
                        "tool_calls"
                    } else {
                        finish(g.finish_reason)
                    };
                    if !sent_first {
                        evs.push(chunk(json!([kind.choice("", None, true, true)]), None));
                        sent_first = true;
                    }
                    evs.push(chunk(
                        json!([kind.choice("", Some(reason), false, true)]),
                        None,
                    ));
                    if include_usage {
                        evs.push(chunk(json!([]), Some(usage(&g))));
                    }
                    evs.push(Event::default().data("[DONE]"));
                }
                // Mid-stream failure: OpenAI-shaped error object, then the end.
                Some(Err(e)) => {
                    evs.push(Event::default().data(
                    json!({ "error": { "message": e.to_string(), "type": "server_error" } })
                        .to_string(),
                ));
                    evs.push(Event::default().data("[DONE]"));
                }
            }
            evs
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
