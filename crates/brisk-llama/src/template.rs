//! Chat templates: the Jinja template a GGUF file carries in
//! `tokenizer.chat_template`, rendered with minijinja the way Hugging Face's
//! `apply_chat_template` does (`trim_blocks`, `lstrip_blocks`, Python string
//! methods, `raise_exception`, Python's `tojson`), with ChatML as the
//! fallback.
//!
//! Tools (OpenAI's `tools`) go to the template as `tools`, in Hugging
//! Face's shape, when the template writes calls in brisk's syntax (Hermes'
//! `<tool_call>`, see [`brisk_core::tools`]): Qwen 2.5 and Hermes templates
//! do. Any other template gets [`GENERIC_TOOLS_PROMPT`] in the system
//! message instead, and earlier calls and tool results as text in that
//! same syntax, so that every model is asked for calls one way and one
//! parser reads them.

use std::collections::BTreeMap;

use brisk_core::tools::{CALL_CLOSE, CALL_OPEN};
use brisk_core::{ChatMessage, Tool};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde};
use minijinja::{Environment, Error, ErrorKind, Value};

const TEMPLATE_NAME: &str = "chat";

/// The system prompt that offers tools to a model whose template does not
/// take them; `{tools}` becomes one JSON object per line.
pub const GENERIC_TOOLS_PROMPT: &str = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

/// A model's chat template, compiled once at load.
pub struct ChatTemplate {
    env: Option<Environment<'static>>,
    /// The template renders `tools` and writes calls as `<tool_call>`.
    native_tools: bool,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("jinja", &self.env.is_some())
            .field("native_tools", &self.native_tools)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

/// A Jinja map (dict) value.
fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::from(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<String, Value>>(),
    )
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// JSON as Python's `json.dumps` writes it (`", "` and `": "` between
/// items), which is what Hugging Face's `tojson` gives templates.
struct PythonJson;

impl serde_json::ser::Formatter for PythonJson {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Python's `", "` before every array item and object key but the first.
fn item_separator<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

/// `serde_json` text in Python's spacing.
pub fn python_json(value: &impl serde::Serialize) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonJson);
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// The `tojson` filter: Python's spacing, or `indent=N`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let bad = |e: serde_json::Error| Error::new(ErrorKind::InvalidOperation, e.to_string());
    let text = match indent {
        None => python_json(&value).map_err(bad)?,
        Some(n) => {
            let pad = " ".repeat(n);
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(pad.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            serde::Serialize::serialize(&value, &mut ser).map_err(bad)?;
            String::from_utf8(out).unwrap_or_default()
        }
    };
    Ok(Value::from_safe_string(text))
}

/// JSON text as a template value (a string that is not JSON stays a
/// string).
fn json_value(text: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => Value::from(Serde(&v)),
        Err(_) => Value::from(text),
    }
}

/// OpenAI's tool entry (`{"type": "function", "function": {...}}`), as
/// Hugging Face templates read it.
fn tool_json(t: &Tool) -> serde_json::Value {
    let mut function = serde_json::Map::new();
    function.insert("name".into(), t.name.clone().into());
    if let Some(d) = &t.description {
        function.insert("description".into(), d.clone().into());
    }
    function.insert(
        "parameters".into(),
        serde_json::from_str(&t.parameters).unwrap_or(serde_json::Value::Null),
    );
    serde_json::json!({"type": "function", "function": function})
}

fn tool_value(t: &Tool) -> Value {
    Value::from(Serde(tool_json(t)))
}

/// One call as `<tool_call>` text, the way Qwen's template writes it.
pub fn call_text(name: &str, arguments: &str) -> String {
    let args = serde_json::from_str::<serde_json::Value>(arguments)
        .ok()
        .and_then(|v| python_json(&v).ok())
        .unwrap_or_else(|| arguments.to_string());
    format!(
        "{CALL_OPEN}\n{{\"name\": {}, \"arguments\": {args}}}\n{CALL_CLOSE}",
        serde_json::Value::from(name)
    )
}

impl ChatTemplate {
    /// Compiles `source`; a template that does not compile is logged and
    /// ChatML is used instead.
    pub fn new(source: Option<&str>, bos_token: &str, eos_token: &str) -> Self {
        let env = source.and_then(|src| match Self::compile(src) {
            Ok(env) => Some(env),
            Err(e) => {
                tracing::warn!(error = %e, "chat template does not compile; using ChatML");
                None
            }
        });
        let native_tools = env.is_some()
            && source.is_some_and(|src| src.contains("tools") && src.contains(CALL_OPEN));
        Self {
            env,
            native_tools,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        }
    }

    /// ChatML only (for models without a template).
    pub fn chatml() -> Self {
        Self::new(None, "", "")
    }

    fn compile(source: &str) -> Result<Environment<'static>, Error> {
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())?;
        Ok(env)
    }

    /// Whether the model's own template is in use (else ChatML).
    pub fn has_template(&self) -> bool {
        self.env.is_some()
    }

    /// Whether the model's template takes `tools` itself (else brisk's
    /// generic tools prompt is used).
    pub fn native_tools(&self) -> bool {
        self.native_tools
    }

    /// Renders with the model's template, or an error if there is none or
    /// it fails on these messages.
    pub fn render_jinja(&self, messages: &[ChatMessage], tools: &[Tool]) -> Result<String, String> {
        let env = self.env.as_ref().ok_or("the model has no chat template")?;
        let template = env.get_template(TEMPLATE_NAME).map_err(|e| e.to_string())?;
        let messages: Vec<Value> = messages.iter().map(message_value).collect();
        let tools: Vec<Value> = tools.iter().map(tool_value).collect();
        let tools = if tools.is_empty() {
            Value::from(())
        } else {
            Value::from(tools)
        };
        let ctx = map([
            ("messages", Value::from(messages)),
            ("tools", tools),
            ("add_generation_prompt", Value::from(true)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ]);
        template.render(ctx).map_err(|e| {
            // minijinja's alternate form includes the cause chain.
            format!("{e:#}")
        })
    }

    /// The prompt for `messages` (and the `tools` the model may call),
    /// ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage], tools: &[Tool]) -> String {
        let generic;
        let (messages, tools) = if self.native_tools {
            (messages, tools)
        } else {
            generic = as_text(messages, tools);
            (generic.as_slice(), &[][..])
        };
        if self.env.is_some() {
            match self.render_jinja(messages, tools) {
                Ok(text) => return text,
                Err(e) => tracing::warn!(error = %e, "chat template failed; using ChatML"),
            }
        }
        render_chatml(messages)
    }
}

/// A message as Hugging Face templates read it: `tool_calls` with the
/// arguments as an object, `tool_call_id` on tool results.
fn message_value(m: &ChatMessage) -> Value {
    let mut entries: BTreeMap<String, Value> = BTreeMap::new();
    entries.insert("role".into(), Value::from(m.role.as_str()));
    entries.insert("content".into(), Value::from(m.content.as_str()));
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                map([
                    ("id", Value::from(c.id.as_str())),
                    ("type", Value::from("function")),
                    (
                        "function",
                        map([
                            ("name", Value::from(c.name.as_str())),
                            ("arguments", json_value(&c.arguments)),
                        ]),
                    ),
                ])
            })
            .collect();
        entries.insert("tool_calls".into(), Value::from(calls));
    }
    if let Some(id) = &m.tool_call_id {
        entries.insert("tool_call_id".into(), Value::from(id.as_str()));
    }
    if let Some(name) = &m.name {
        entries.insert("name".into(), Value::from(name.as_str()));
    }
    Value::from(entries)
}

/// The conversation for a template that knows no tools: the tools prompt
/// joins the system message, calls and results become text.
fn as_text(messages: &[ChatMessage], tools: &[Tool]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let lines: Vec<String> = tools
            .iter()
            .map(|t| python_json(&tool_json(t)).unwrap_or_default())
            .collect();
        let prompt = GENERIC_TOOLS_PROMPT.replace("{tools}", &lines.join("\n"));
        match messages.first() {
            Some(first) if first.role == "system" => {
                out.push(ChatMessage::new(
                    "system".into(),
                    format!("{}\n\n{prompt}", first.content),
                ));
            }
            _ => out.push(ChatMessage::new("system".into(), prompt)),
        }
    }
    let skip =
        usize::from(!tools.is_empty() && messages.first().is_some_and(|m| m.role == "system"));
    for m in &messages[skip..] {
        if m.role == "tool" {
            let text = format!("<tool_response>\n{}\n</tool_response>", m.content);
            // Consecutive results share one user turn, as in Qwen's template.
            match out.last_mut() {
                Some(last) if last.role == "user" && last.content.ends_with("</tool_response>") => {
                    last.content.push('\n');
                    last.content.push_str(&text);
                }
                _ => out.push(ChatMessage::new("user".into(), text)),
            }
        } else if !m.tool_calls.is_empty() {
            let mut text = m.content.clone();
            for c in &m.tool_calls {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&call_text(&c.name, &c.arguments));
            }
            out.push(ChatMessage::new(m.role.clone(), text));
        } else {
            out.push(ChatMessage::new(m.role.clone(), m.content.clone()));
        }
    }
    out
}

/// `<|im_start|>role\ncontent<|im_end|>\n` per message, then
/// `<|im_start|>assistant\n`.
pub fn render_chatml(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str("<|im_start|>");
        out.push_str(&m.role);
        out.push('\n');
        out.push_str(&m.content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-Instruct's template, as in its GGUF file.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage::new(role.into(), content.into())
    }

    #[test]
    fn smollm2_template_adds_default_system_prompt() {
        let t = ChatTemplate::new(Some(SMOLLM2), "<|im_start|>", "<|im_end|>");
        assert!(t.has_template());
        assert_eq!(
            t.render(&[msg("user", "Hi")], &[]),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&[msg("system", "Be brief."), msg("user", "Hi")], &[]),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_bos_and_trim_blocks() {
        let src = "{{ bos_token }}{% for m in messages %}\n  {{ m.role.upper() }}: {{ m.content.strip() }}{{ eos_token }}\n{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}";
        let t = ChatTemplate::new(Some(src), "<s>", "</s>");
        assert_eq!(
            t.render_jinja(&[msg("user", "  hello  ")], &[])
                .expect("renders"),
            "<s>  USER: hello</s>\nA:"
        );
    }

    #[test]
    fn failing_or_broken_templates_fall_back_to_chatml() {
        let raising = "{{ raise_exception('Conversation roles must alternate') }}";
        let t = ChatTemplate::new(Some(raising), "", "");
        let err = t
            .render_jinja(&[msg("user", "x")], &[])
            .expect_err("raises");
        assert!(err.contains("must alternate"), "{err}");
        assert_eq!(
            t.render(&[msg("user", "x")], &[]),
            render_chatml(&[msg("user", "x")])
        );

        let broken = ChatTemplate::new(Some("{% for %}"), "", "");
        assert!(!broken.has_template());
        assert_eq!(
            broken.render(&[msg("user", "x")], &[]),
            "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            ChatTemplate::chatml().render(&[], &[]),
            "<|im_start|>assistant\n"
        );
    }
}
