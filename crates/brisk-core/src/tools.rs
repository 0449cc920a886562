//! Tool calling (OpenAI's `tools`): the request's function definitions, the
//! calls a model makes, and how calls are written in generated text.
//!
//! brisk has one syntax for calls in text, Hermes' (which Qwen 2.5, Hermes
//! and many fine-tunes are trained on, and which their chat templates
//! describe): each call is a JSON object `{"name": ..., "arguments": {...}}`
//! between [`CALL_OPEN`] and [`CALL_CLOSE`]. The generation backend renders
//! the tools into the prompt and constrains the call with a grammar; the
//! HTTP edge takes the text apart with [`ToolCallSplitter`], as it streams.
//!
//! Small models trained on that syntax still often answer a tool question
//! with the bare call object, or the object in a ```json fence (Qwen2.5-
//! Coder-0.5B does). A whole reply that is one such object, naming an
//! offered function and carrying `arguments`, is a call too; llama.cpp's
//! server accepts the same variants for Hermes-style models.

use serde::{Deserialize, Serialize};

/// Opens one call in generated text.
pub const CALL_OPEN: &str = "<tool_call>";
/// Closes one call.
pub const CALL_CLOSE: &str = "</tool_call>";

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// The JSON schema of the arguments, as JSON text (an object schema).
    pub parameters: String,
}

/// Whether the model calls a tool (OpenAI's `tool_choice`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model answers in prose or calls tools, as it decides.
    #[default]
    Auto,
    /// No call; the tools are not shown to the model.
    None,
    /// At least one call.
    Required,
    /// A call of this function.
    Function(String),
}

/// One call a model made, or that an earlier assistant message carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text (OpenAI sends and returns a string).
    pub arguments: String,
}

/// A piece of generated text, taken apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Prose for the user.
    Content(String),
    /// A whole call: the function's name and its arguments as JSON text.
    Call { name: String, arguments: String },
}

/// Takes generated text apart into prose and calls, piece by piece as it
/// streams. Text that might be the start of [`CALL_OPEN`] is held back
/// until the next piece tells; a call comes out once it is closed.
#[derive(Debug, Default)]
pub struct ToolCallSplitter {
    buf: String,
    in_call: bool,
    calls: usize,
    /// The offered functions: a bare or fenced object must name one.
    names: Vec<String>,
    /// Nothing has gone out yet and the reply so far is empty or starts
    /// like a bare or fenced call: it is held until the end decides.
    undecided: bool,
}

impl ToolCallSplitter {
    /// A splitter for a reply to a request that offered `names`.
    pub fn new(names: Vec<String>) -> Self {
        Self {
            names,
            undecided: true,
            ..Self::default()
        }
    }

    /// How many calls have come out so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Feeds one piece; returns what is complete.
    pub fn push(&mut self, piece: &str) -> Vec<Part> {
        self.buf.push_str(piece);
        if self.undecided {
            match self.buf.trim_start().chars().next() {
                None | Some('{') | Some('`') => return Vec::new(),
                Some(_) => self.undecided = false,
            }
        }
        let mut out = Vec::new();
        loop {
            if self.in_call {
                let Some(end) = self.buf.find(CALL_CLOSE) else {
                    break;
                };
                let body: String = self.buf[..end].to_string();
                self.buf.drain(..end + CALL_CLOSE.len());
                self.in_call = false;
                match parse_call(&body) {
                    Some((name, arguments)) => {
                        self.calls += 1;
                        out.push(Part::Call { name, arguments });
                    }
                    // Not a call after all (the model wrote the tags in
                    // prose): the text goes out as it was.
                    None => out.push(Part::Content(format!("{CALL_OPEN}{body}{CALL_CLOSE}"))),
                }
            } else if let Some(start) = self.buf.find(CALL_OPEN) {
                let before: String = self.buf[..start].to_string();
                self.buf.drain(..start + CALL_OPEN.len());
                self.in_call = true;
                // Whitespace between calls is not prose.
                if !(self.calls > 0 && before.trim().is_empty()) {
                    push_content(&mut out, before);
                }
            } else {
                // Keep back the longest tail that could begin CALL_OPEN.
                let keep = (1..CALL_OPEN.len())
                    .rev()
                    .find(|&n| {
                        self.buf.len() >= n
                            && self.buf.is_char_boundary(self.buf.len() - n)
                            && CALL_OPEN.starts_with(&self.buf[self.buf.len() - n..])
                    })
                    .unwrap_or(0);
                let ready: String = self.buf.drain(..self.buf.len() - keep).collect();
                if !(self.calls > 0 && ready.trim().is_empty()) {
                    push_content(&mut out, ready);
                }
                break;
            }
        }
        out
    }

    /// The end of the text: what was held back goes out as prose (an
    /// unclosed call, cut by `max_tokens`, included).
    pub fn finish(&mut self) -> Vec<Part> {
        if self.undecided {
            self.undecided = false;
            if let Some((name, arguments)) = whole_call(&self.buf, &self.names) {
                self.buf.clear();
                self.calls += 1;
                return vec![Part::Call { name, arguments }];
            }
            // Prose after all (a code block, say): the usual way.
            let text = std::mem::take(&mut self.buf);
            let mut out = self.push(&text);
            out.extend(self.finish());
            return out;
        }
        let rest = std::mem::take(&mut self.buf);
        let rest = if self.in_call {
            format!("{CALL_OPEN}{rest}")
        } else {
            rest
        };
        self.in_call = false;
        let mut out = Vec::new();
        if !(self.calls > 0 && rest.trim().is_empty()) {
            push_content(&mut out, rest);
        }
        out
    }

    /// Takes a whole text apart: the prose (calls removed) and the calls.
    pub fn split(text: &str, names: &[String]) -> (String, Vec<(String, String)>) {
        let mut s = Self::new(names.to_vec());
        let mut parts = s.push(text);
        parts.extend(s.finish());
        let mut content = String::new();
        let mut calls = Vec::new();
        for p in parts {
            match p {
                Part::Content(c) => content.push_str(&c),
                Part::Call { name, arguments } => calls.push((name, arguments)),
            }
        }
        (content, calls)
    }
}

fn push_content(out: &mut Vec<Part>, text: String) {
    if !text.is_empty() {
        out.push(Part::Content(text));
    }
}

/// A whole reply that is one call object, bare or in a ``` fence, naming
/// one of `names` and carrying `arguments`.
fn whole_call(text: &str, names: &[String]) -> Option<(String, String)> {
    let mut body = text.trim();
    if let Some(fenced) = body.strip_prefix("```") {
        let fenced = fenced.strip_prefix("json").unwrap_or(fenced);
        body = fenced.strip_suffix("```")?.trim();
    }
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("arguments")?;
    let (name, arguments) = parse_call(body)?;
    names.contains(&name).then_some((name, arguments))
}

/// `{"name": "...", "arguments": {...}}` → (name, arguments as JSON text).
/// Arguments given as a string holding JSON (some models write that) are
/// taken as that JSON.
fn parse_call(body: &str) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    let name = value.get("name")?.as_str()?.to_string();
    let arguments = match value.get("arguments") {
        None | Some(serde_json::Value::Null) => "{}".to_string(),
        Some(serde_json::Value::String(s)) => {
            serde_json::from_str::<serde_json::Value>(s).ok()?;
            s.clone()
        }
        Some(v) => v.to_string(),
    };
    Some((name, arguments))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["f".into(), "get_weather".into(), "now".into()]
    }

    fn feed(pieces: &[&str]) -> Vec<Part> {
        let mut s = ToolCallSplitter::new(names());
        let mut out = Vec::new();
        for p in pieces {
            out.extend(s.push(p));
        }
        out.extend(s.finish());
        out
    }

    fn call(name: &str, arguments: &str) -> Part {
        Part::Call {
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn prose_passes_through_and_a_lone_angle_bracket_is_only_held_back() {
        assert_eq!(
            feed(&["Hello", " a < b", " and <tool", "s>"]),
            vec![
                Part::Content("Hello".into()),
                Part::Content(" a < b".into()),
                Part::Content(" and ".into()),
                Part::Content("<tools>".into()),
            ]
        );
    }

    #[test]
    fn calls_split_across_pieces_come_out_whole() {
        let parts = feed(&[
            "<tool_",
            "call>\n{\"name\": \"get_weather\", \"argu",
            "ments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>\n<tool_call>",
            "{\"name\": \"now\", \"arguments\": {}}</tool_call>",
        ]);
        assert_eq!(
            parts,
            vec![
                call("get_weather", r#"{"city":"Paris","unit":"c"}"#),
                call("now", "{}"),
            ]
        );
    }

    #[test]
    fn prose_before_a_call_is_content_and_argument_order_is_kept() {
        let (content, calls) = ToolCallSplitter::split(
            "Let me look.<tool_call>{\"name\": \"f\", \"arguments\": {\"z\": 1, \"a\": [2]}}</tool_call>",
            &names(),
        );
        assert_eq!(content, "Let me look.");
        assert_eq!(calls, vec![("f".into(), r#"{"z":1,"a":[2]}"#.into())]);
    }

    #[test]
    fn string_arguments_holding_json_are_accepted_and_broken_calls_stay_text() {
        let (_, calls) = ToolCallSplitter::split(
            r#"<tool_call>{"name": "f", "arguments": "{\"x\": 1}"}</tool_call>"#,
            &names(),
        );
        assert_eq!(calls, vec![("f".into(), r#"{"x": 1}"#.into())]);
        let text = "<tool_call>not json</tool_call>";
        assert_eq!(
            ToolCallSplitter::split(text, &names()),
            (text.to_string(), vec![])
        );
        // Cut by max_tokens: the unclosed call is text.
        let cut = "<tool_call>{\"name\": \"f\", \"argu";
        assert_eq!(
            ToolCallSplitter::split(cut, &names()),
            (cut.to_string(), vec![])
        );
    }

    #[test]
    fn a_whole_reply_that_is_a_call_object_bare_or_fenced_is_a_call() {
        let fenced = "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\"city\": \"Paris\"}\n}\n```";
        let mut s = ToolCallSplitter::new(names());
        let mut parts = Vec::new();
        for piece in fenced.split_inclusive('\n') {
            parts.extend(s.push(piece));
        }
        assert!(parts.is_empty(), "held until the end: {parts:?}");
        parts.extend(s.finish());
        assert_eq!(parts, vec![call("get_weather", r#"{"city":"Paris"}"#)]);
        assert_eq!(
            ToolCallSplitter::split(" {\"name\": \"now\", \"arguments\": {}}", &names()).1,
            vec![("now".to_string(), "{}".to_string())]
        );
        // An object that names no offered function, or has no arguments,
        // and a code block in prose stay text.
        for text in [
            "{\"name\": \"Bob\", \"arguments\": {}}",
            "{\"name\": \"f\"}",
            "```python\nprint(1)\n```",
        ] {
            assert_eq!(
                ToolCallSplitter::split(text, &names()),
                (text.to_string(), vec![])
            );
        }
    }
}
