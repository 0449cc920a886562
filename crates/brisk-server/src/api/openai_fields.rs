//! Every field of OpenAI's request schemas, per endpoint, and what brisk
//! does with it: honoured, or refused with a 400 that names it. A field
//! that a client sends is never silently dropped: the client would believe
//! it was honoured. Fields outside OpenAI's schemas are ignored, as OpenAI
//! ignores them. The README's table is this table.
//!
//! Honoured fields are the request structs' own fields (a value they cannot
//! honour, such as `n: 2`, is refused where it is read). The handlers
//! collect the rest of the body and call [`refuse`], which answers for the
//! refused ones.

use serde_json::{Map, Value};

use crate::error::AppError;

/// What brisk does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Read and acted on (some values may still be refused by name).
    Honoured,
    /// Always a 400 naming the field, with this reason.
    Refused(&'static str),
}

use Support::{Honoured, Refused};

/// `POST /v1/chat/completions`.
pub const CHAT: &[(&str, Support)] = &[
    ("messages", Honoured),
    ("model", Honoured),
    ("audio", Refused("audio output is not supported")),
    ("frequency_penalty", Honoured),
    (
        "function_call",
        Refused("the deprecated functions API is not supported; use tools and tool_choice"),
    ),
    (
        "functions",
        Refused("the deprecated functions API is not supported; use tools"),
    ),
    ("logit_bias", Honoured),
    ("logprobs", Honoured),
    ("max_completion_tokens", Honoured),
    ("max_tokens", Honoured),
    ("metadata", Honoured),
    ("modalities", Honoured),
    ("moderation", Refused("moderation is not supported")),
    ("n", Honoured),
    ("parallel_tool_calls", Honoured),
    ("prediction", Refused("predicted outputs are not supported")),
    ("presence_penalty", Honoured),
    ("prompt_cache_key", Honoured),
    (
        "prompt_cache_options",
        Refused("the prefix cache lives as long as the model's slots; it has no options"),
    ),
    (
        "prompt_cache_retention",
        Refused("the prefix cache lives as long as the model's slots; it has no retention setting"),
    ),
    (
        "reasoning_effort",
        Refused("brisk serves no reasoning models"),
    ),
    ("response_format", Honoured),
    ("safety_identifier", Honoured),
    ("seed", Honoured),
    ("service_tier", Honoured),
    ("stop", Honoured),
    ("store", Honoured),
    ("stream", Honoured),
    ("stream_options", Honoured),
    ("temperature", Honoured),
    ("tool_choice", Honoured),
    ("tools", Honoured),
    ("top_logprobs", Honoured),
    ("top_p", Honoured),
    ("user", Honoured),
    ("verbosity", Refused("output verbosity is not supported")),
    ("web_search_options", Refused("web search is not supported")),
];

/// `POST /v1/completions`.
pub const COMPLETIONS: &[(&str, Support)] = &[
    ("model", Honoured),
    ("prompt", Honoured),
    ("best_of", Honoured),
    ("echo", Refused("echoing the prompt is not supported")),
    ("frequency_penalty", Honoured),
    ("logit_bias", Honoured),
    ("logprobs", Honoured),
    ("max_tokens", Honoured),
    ("n", Honoured),
    ("presence_penalty", Honoured),
    ("seed", Honoured),
    ("stop", Honoured),
    ("stream", Honoured),
    ("stream_options", Honoured),
    (
        "suffix",
        Refused("fill-in-the-middle (suffix) is not supported"),
    ),
    ("temperature", Honoured),
    ("top_p", Honoured),
    ("user", Honoured),
];

/// `POST /v1/embeddings`.
pub const EMBEDDINGS: &[(&str, Support)] = &[
    ("input", Honoured),
    ("model", Honoured),
    ("dimensions", Honoured),
    ("encoding_format", Honoured),
    ("user", Honoured),
];

/// `POST /v1/audio/transcriptions` (multipart).
pub const TRANSCRIPTIONS: &[(&str, Support)] = &[
    ("file", Honoured),
    ("model", Honoured),
    ("chunking_strategy", Honoured),
    ("include", Refused("transcript logprobs are not supported")),
    (
        "keywords",
        Refused("keyword boosting is not supported; put the words in prompt"),
    ),
    (
        "known_speaker_names",
        Refused("speaker diarization is not supported"),
    ),
    (
        "known_speaker_references",
        Refused("speaker diarization is not supported"),
    ),
    ("language", Honoured),
    (
        "languages",
        Refused("give one language in language, or none to detect it"),
    ),
    ("prompt", Honoured),
    ("response_format", Honoured),
    ("stream", Honoured),
    ("temperature", Honoured),
    ("timestamp_granularities", Honoured),
];

/// `POST /v1/audio/translations` (multipart).
pub const TRANSLATIONS: &[(&str, Support)] = &[
    ("file", Honoured),
    ("model", Honoured),
    ("prompt", Honoured),
    ("response_format", Honoured),
    ("temperature", Honoured),
];

/// `POST /v1/audio/speech`.
pub const SPEECH: &[(&str, Support)] = &[
    ("input", Honoured),
    ("model", Honoured),
    ("voice", Honoured),
    ("instructions", Honoured),
    ("response_format", Honoured),
    ("speed", Honoured),
    ("stream_format", Honoured),
];

/// Every endpoint's table, for the README and the tests.
pub const ENDPOINTS: &[(&str, &[(&str, Support)])] = &[
    ("POST /v1/chat/completions", CHAT),
    ("POST /v1/completions", COMPLETIONS),
    ("POST /v1/embeddings", EMBEDDINGS),
    ("POST /v1/audio/transcriptions", TRANSCRIPTIONS),
    ("POST /v1/audio/translations", TRANSLATIONS),
    ("POST /v1/audio/speech", SPEECH),
];

/// A 400 for the first refused field among `names` (the fields a request
/// carried beyond its struct's own); `null` counts as absent, as the SDKs
/// send it for unset fields.
pub fn refuse_names<'a>(
    table: &[(&'static str, Support)],
    names: impl IntoIterator<Item = (&'a str, bool)>,
) -> Result<(), AppError> {
    for (name, is_null) in names {
        if is_null {
            continue;
        }
        if let Some((field, Refused(why))) = table.iter().find(|(f, _)| *f == name) {
            return Err(AppError::bad(
                format!("{field} is not supported: {why}"),
                field,
            ));
        }
    }
    Ok(())
}

/// A multipart field's name as OpenAI's schema spells it: the SDKs send
/// arrays as repeated `name[]` fields.
pub fn form_name(name: &str) -> &str {
    name.strip_suffix("[]").unwrap_or(name)
}

/// [`refuse_names`] for a JSON body's leftover fields.
pub fn refuse(
    table: &[(&'static str, Support)],
    rest: &Map<String, Value>,
) -> Result<(), AppError> {
    refuse_names(table, rest.iter().map(|(k, v)| (k.as_str(), v.is_null())))
}

/// The README's table: one row per endpoint and support, fields listed.
pub fn markdown() -> String {
    let mut out = String::from(
        "| endpoint | honoured | refused with a 400 naming the field |\n|---|---|---|\n",
    );
    for (endpoint, table) in ENDPOINTS {
        let honoured: Vec<String> = table
            .iter()
            .filter(|(_, s)| *s == Honoured)
            .map(|(f, _)| format!("`{f}`"))
            .collect();
        let refused: Vec<String> = table
            .iter()
            .filter_map(|(f, s)| match s {
                Refused(why) => Some(format!("`{f}` ({why})")),
                Honoured => None,
            })
            .collect();
        out.push_str(&format!(
            "| `{endpoint}` | {} | {} |\n",
            honoured.join(", "),
            if refused.is_empty() {
                "none".to_string()
            } else {
                refused.join("; ")
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_fields_are_named_and_unknown_or_null_ones_pass() {
        let mut rest = Map::new();
        rest.insert("my_extension".into(), Value::Bool(true));
        rest.insert("prediction".into(), Value::Null);
        assert!(refuse(CHAT, &rest).is_ok());
        rest.insert("audio".into(), serde_json::json!({"voice": "alloy"}));
        match refuse(CHAT, &rest) {
            Err(AppError::BadRequest { param, message }) => {
                assert_eq!(param, Some("audio"));
                assert!(message.contains("audio output"), "{message}");
            }
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    /// The tables list exactly the fields of OpenAI's own OpenAPI document
    /// (tests/fixtures/openai_request_fields.json, written from it by
    /// scripts/gen_openai_fields.py): a field OpenAI adds shows up here.
    #[test]
    fn tables_cover_openais_schema_exactly() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/openai_request_fields.json"
        ))
        .expect("fixture");
        let spec = fixture["fields"].as_object().expect("fields");
        assert_eq!(spec.len(), ENDPOINTS.len());
        for (endpoint, table) in ENDPOINTS {
            let mut want: Vec<&str> = spec[*endpoint]
                .as_array()
                .unwrap_or_else(|| panic!("{endpoint} not in the fixture"))
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let mut have: Vec<&str> = table.iter().map(|(f, _)| *f).collect();
            want.sort_unstable();
            have.sort_unstable();
            assert_eq!(have, want, "{endpoint}");
        }
    }

    #[test]
    fn each_table_lists_a_field_once_and_the_readme_table_matches_the_code() {
        for (endpoint, table) in ENDPOINTS {
            let mut names: Vec<&str> = table.iter().map(|(f, _)| *f).collect();
            names.sort_unstable();
            let n = names.len();
            names.dedup();
            assert_eq!(n, names.len(), "{endpoint} lists a field twice");
        }
        let readme = include_str!("../../../../README.md");
        assert!(
            readme.contains(&markdown()),
            "README.md's OpenAI field table is out of date; paste this:\n{}",
            markdown()
        );
    }
}

/// Each honoured field of a JSON endpoint is one its request struct reads:
/// sent alone, it never lands among the leftovers that [`refuse`] sees.
/// Each refused one does, and is a 400 naming it.
#[cfg(test)]
mod walk {
    use serde::de::DeserializeOwned;
    use serde_json::{json, Map, Value};

    use super::*;
    use crate::api::chat::{ChatRequest, CompletionRequest};
    use crate::api::embeddings::EmbeddingsRequest;
    use crate::api::speech::SpeechRequest;

    /// The fields of `{field: value}` that `T` leaves over, or `None` when
    /// `T` read the field and refused the value (a known field).
    fn leftovers<T: DeserializeOwned>(
        field: &str,
        value: Value,
        rest: impl Fn(&T) -> &Map<String, Value>,
    ) -> Option<Vec<String>> {
        let body = json!({ field: value });
        serde_json::from_value::<T>(body)
            .ok()
            .map(|req| rest(&req).keys().cloned().collect())
    }

    fn check<T: DeserializeOwned>(
        table: &[(&'static str, Support)],
        rest: impl Fn(&T) -> &Map<String, Value> + Copy,
    ) {
        for (field, support) in table {
            // A value of the wrong type for most fields, and a plausible one:
            // neither may leave an honoured field over.
            for value in [json!({"x": 1}), json!("x"), json!(1)] {
                let left = leftovers::<T>(field, value.clone(), rest);
                match support {
                    Honoured => assert!(
                        left.as_ref().is_none_or(|l| !l.iter().any(|f| f == field)),
                        "{field} is listed as honoured but the request struct does not read it"
                    ),
                    Refused(_) => {
                        let left = left.unwrap_or_else(|| panic!("{field}: body refused"));
                        assert!(left.iter().any(|f| f == field), "{field}");
                        let mut map = Map::new();
                        map.insert(field.to_string(), value);
                        match refuse(table, &map) {
                            Err(AppError::BadRequest { param, .. }) => {
                                assert_eq!(param, Some(*field))
                            }
                            other => panic!("{field}: expected a 400, got {other:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn chat_fields() {
        check::<ChatRequest>(CHAT, |r| &r.rest);
    }

    #[test]
    fn completions_fields() {
        check::<CompletionRequest>(COMPLETIONS, |r| &r.rest);
    }

    #[test]
    fn embeddings_fields() {
        check::<EmbeddingsRequest>(EMBEDDINGS, |r| &r.rest);
    }

    #[test]
    fn speech_fields() {
        check::<SpeechRequest>(SPEECH, |r| &r.rest);
    }
}
