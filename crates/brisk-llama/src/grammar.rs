//! `response_format` as a llama.cpp grammar (GBNF): JSON schemas are
//! converted by llama.cpp's own `json_schema_to_grammar`, after a check
//! that refuses, by name, the schema keywords that converter cannot express
//! (it would silently ignore them, and the reply would then not validate).

use brisk_core::{BackendError, ResponseFormat};
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
}
