//! `response_format` as a llama.cpp grammar (GBNF): JSON schemas are
//! converted by llama.cpp's own `json_schema_to_grammar`, after a check
//! that refuses, by name, the schema keywords that converter cannot express
//! (it would silently ignore them, and the reply would then not validate).

use brisk_core::tools::{CALL_CLOSE, CALL_OPEN};
use brisk_core::{BackendError, ResponseFormat, Tool, ToolChoice};
use serde_json::Value;

/// Keywords the converter ignores: a schema using them is refused.
const UNSUPPORTED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "$dynamicRef",
];

/// Keywords whose value is a schema.
const SUB_SCHEMA: &[&str] = &["items", "additionalProperties", "additionalItems"];
/// Keywords whose value is a list of schemas.
const SCHEMA_LISTS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];
/// Keywords whose value is a map of schemas.
const SCHEMA_MAPS: &[&str] = &["properties", "$defs", "definitions"];

/// The first unsupported keyword in `schema`, with its JSON pointer.
pub fn unsupported_keyword(schema: &Value, path: &str) -> Option<String> {
    let Value::Object(map) = schema else {
        return None;
    };
    for (key, value) in map {
        let here = format!("{path}/{key}");
        if UNSUPPORTED.contains(&key.as_str()) {
            return Some(here);
        }
        if key == "$ref" && !value.as_str().is_some_and(|r| r.starts_with("#/")) {
            return Some(format!("{here} (only local references, #/...)"));
        }
        if SUB_SCHEMA.contains(&key.as_str()) {
            if let Some(found) = unsupported_keyword(value, &here) {
                return Some(found);
            }
        }
        if SCHEMA_LISTS.contains(&key.as_str()) {
            if let Value::Array(items) = value {
                for (i, item) in items.iter().enumerate() {
                    if let Some(found) = unsupported_keyword(item, &format!("{here}/{i}")) {
                        return Some(found);
                    }
                }
            }
        }
        if SCHEMA_MAPS.contains(&key.as_str()) {
            if let Value::Object(props) = value {
                for (name, sub) in props {
                    if let Some(found) = unsupported_keyword(sub, &format!("{here}/{name}")) {
                        return Some(found);
                    }
                }
            }
        }
    }
    None
}

/// The GBNF grammar (root rule `root`) for `format`.
pub fn gbnf(format: &ResponseFormat) -> Result<String, BackendError> {
    let schema = match format {
        // Any JSON object.
        ResponseFormat::JsonObject => r#"{"type": "object"}"#.to_string(),
        ResponseFormat::JsonSchema(schema) => {
            let value: Value = serde_json::from_str(schema).map_err(|e| {
                BackendError::InvalidInput(format!(
                    "response_format.json_schema.schema is not JSON: {e}"
                ))
            })?;
            if !value.is_object() && !value.is_boolean() {
                return Err(BackendError::InvalidInput(
                    "response_format.json_schema.schema must be a JSON object".into(),
                ));
            }
            if let Some(keyword) = unsupported_keyword(&value, "") {
                return Err(BackendError::InvalidInput(format!(
                    "response_format.json_schema.schema uses {keyword}, which constrained \
                     decoding cannot enforce"
                )));
            }
            schema.clone()
        }
    };
    llama_cpp_2::json_schema_to_grammar(&schema).map_err(|e| {
        BackendError::InvalidInput(format!(
            "response_format.json_schema.schema cannot be turned into a grammar: {e}"
        ))
    })
}

/// The grammar of a tool-call answer: one call (or several, with
/// `parallel`) in brisk's syntax, each `{"name": ..., "arguments": ...}`
/// with arguments valid under that function's schema. `choice` narrows the
/// functions to one; with `auto` the caller applies the grammar lazily,
/// from [`CALL_OPEN`] on, so the model may answer in prose instead.
/// Errors name the function whose schema cannot be enforced.
pub fn tool_gbnf(
    tools: &[Tool],
    choice: &ToolChoice,
    parallel: bool,
) -> Result<String, BackendError> {
    let chosen: Vec<&Tool> = match choice {
        ToolChoice::Function(name) => {
            let t = tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                BackendError::InvalidInput(format!(
                    "tool_choice names the function '{name}', which is not in tools"
                ))
            })?;
            vec![t]
        }
        _ => tools.iter().collect(),
    };
    let mut alternatives = Vec::with_capacity(chosen.len());
    for t in &chosen {
        let bad = |why: String| {
            BackendError::InvalidInput(format!("tools: function '{}': {why}", t.name))
        };
        let params: Value = serde_json::from_str(&t.parameters)
            .map_err(|e| bad(format!("parameters is not JSON: {e}")))?;
        if !params.is_object() {
            return Err(bad("parameters must be a JSON schema object".into()));
        }
        if let Some(keyword) = unsupported_keyword(&params, "") {
            return Err(bad(format!(
                "parameters uses {keyword}, which constrained decoding cannot enforce"
            )));
        }
        // Each function's schema on its own first, so that an error names it.
        llama_cpp_2::json_schema_to_grammar(&params.to_string())
            .map_err(|e| bad(format!("parameters cannot be turned into a grammar: {e}")))?;
        alternatives.push(serde_json::json!({
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": params},
            "required": ["name", "arguments"],
            "additionalProperties": false,
        }));
    }
    let schema = if alternatives.len() == 1 {
        alternatives.remove(0)
    } else {
        serde_json::json!({"anyOf": alternatives})
    };
    let json = llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|e| {
        BackendError::InvalidInput(format!("tools cannot be turned into a grammar: {e}"))
    })?;
    // The converter's start rule becomes one call's JSON; ours wraps it.
    let mut out = String::with_capacity(json.len() + 200);
    for line in json.lines() {
        match line.strip_prefix("root ::=") {
            Some(rest) => {
                out.push_str("tool-call-json ::=");
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    let call = format!(
        "tool-call ::= {} \"\\n\"? tool-call-json \"\\n\"? {}\n",
        gbnf_literal(CALL_OPEN),
        gbnf_literal(CALL_CLOSE)
    );
    out.push_str(&call);
    out.push_str(if parallel {
        "tool-calls ::= tool-call (\"\\n\" tool-call)*\n"
    } else {
        "tool-calls ::= tool-call\n"
    });
    // With `auto` the grammar starts where a trigger pattern matched
    // ([`AUTO_TRIGGERS`]): at the opening tag, or at a reply that opens
    // with the bare call object or a fence around it.
    out.push_str(if matches!(choice, ToolChoice::Auto) {
        "root ::= tool-calls | \"```\" \"json\"? \"\\n\"? tool-call-json \"\\n\"? \"```\" | tool-call-json\n"
    } else {
        "root ::= tool-calls\n"
    });
    Ok(out)
}

/// Where an `auto` tool grammar takes over (llama.cpp's lazy grammar
/// patterns: ECMAScript regexes, matched against all text so far, the
/// grammar fed from the first group): the opening tag anywhere, or a reply
/// that opens with a call object, bare or fenced. The splitter at the HTTP
/// edge reads the same three forms.
pub const AUTO_TRIGGERS: &[&str] = &[
    "[\\s\\S]*?(<tool_call>)[\\s\\S]*",
    "^\\s*(```(?:json)?\\s*\\{\\s*\"name\"[\\s\\S]*)$",
    "^\\s*(\\{\\s*\"name\"[\\s\\S]*)$",
];

/// `text` as a GBNF string literal.
fn gbnf_literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unsupported_keywords_anywhere() {
        let ok = json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 0},
            "b": {"type": "array", "items": {"enum": ["x", "y"]}}}, "required": ["a"]});
        assert_eq!(unsupported_keyword(&ok, ""), None);
        let bad = json!({"type": "object", "properties": {"b": {"type": "array",
            "items": {"type": "integer", "multipleOf": 3}}}});
        assert_eq!(
            unsupported_keyword(&bad, "").as_deref(),
            Some("/properties/b/items/multipleOf")
        );
        let bad = json!({"anyOf": [{"type": "string"}, {"not": {"type": "null"}}]});
        assert_eq!(
            unsupported_keyword(&bad, "").as_deref(),
            Some("/anyOf/1/not")
        );
        let remote = json!({"$ref": "https://example.com/s.json"});
        assert!(unsupported_keyword(&remote, "").is_some_and(|k| k.starts_with("/$ref")));
    }

    #[test]
    fn schemas_become_grammars() {
        let g = gbnf(&ResponseFormat::JsonSchema(
            json!({"type": "object", "properties": {"name": {"type": "string"}},
                   "required": ["name"]})
            .to_string(),
        ))
        .expect("grammar");
        assert!(g.contains("root ::="), "{g}");
        assert!(g.contains("name"), "{g}");
        assert!(gbnf(&ResponseFormat::JsonObject).is_ok());
        let err = gbnf(&ResponseFormat::JsonSchema("{not json".into())).expect_err("bad");
        assert!(matches!(err, BackendError::InvalidInput(_)));
        let err = gbnf(&ResponseFormat::JsonSchema(
            json!({"type": "array", "uniqueItems": true}).to_string(),
        ))
        .expect_err("unsupported");
        assert!(format!("{err}").contains("/uniqueItems"), "{err}");
    }

    fn tool(name: &str, parameters: serde_json::Value) -> Tool {
        Tool {
            name: name.into(),
            description: None,
            parameters: parameters.to_string(),
        }
    }

    #[test]
    fn tool_grammars_wrap_each_functions_schema_in_call_tags() {
        let tools = [
            tool(
                "get_weather",
                json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            ),
            tool("now", json!({"type": "object", "properties": {}})),
        ];
        let g = tool_gbnf(&tools, &ToolChoice::Required, true).expect("grammar");
        assert!(
            g.contains("tool-calls ::= tool-call (\"\\n\" tool-call)*"),
            "{g}"
        );
        assert!(g.contains("root ::= tool-calls\n"), "{g}");
        assert!(g.contains("tool-call ::= \"<tool_call>\""), "{g}");
        assert!(g.contains("get_weather") && g.contains("now"), "{g}");
        assert_eq!(g.matches("root ::=").count(), 1, "{g}");
        let one = tool_gbnf(&tools, &ToolChoice::Function("now".into()), false).expect("grammar");
        assert!(!one.contains("get_weather"), "{one}");
        assert!(one.contains("tool-calls ::= tool-call\n"), "{one}");
        let auto = tool_gbnf(&tools, &ToolChoice::Auto, true).expect("grammar");
        assert!(auto.contains("root ::= tool-calls | \"```\""), "{auto}");
    }

    #[test]
    fn tool_grammar_errors_name_the_function() {
        let tools = [tool(
            "f",
            json!({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}),
        )];
        let err = tool_gbnf(&tools, &ToolChoice::Auto, true).expect_err("unsupported");
        assert!(format!("{err}").contains("function 'f'"), "{err}");
        let err = tool_gbnf(&tools, &ToolChoice::Function("g".into()), true).expect_err("unknown");
        assert!(format!("{err}").contains("'g'"), "{err}");
        let bad = [tool("h", json!("string"))];
        let err = tool_gbnf(&bad, &ToolChoice::Auto, true).expect_err("not an object");
        assert!(format!("{err}").contains("function 'h'"), "{err}");
    }
}
