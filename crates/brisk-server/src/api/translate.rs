//! Text translation in LibreTranslate's API, so its clients and plugins
//! work unchanged: `POST /translate`, `GET /languages`, `POST /detect`.
//!
//! Each translation model serves one language pair (one direction); the
//! pair picks the model unless the request names one. A text longer than a
//! sentence is split at sentence boundaries and its sentences translated
//! as one batch, so nothing is cut; HTML (`format: "html"`) keeps its tags
//! and only the text between them is translated. Requests go through the
//! engine like every task: result cache, batching, admission, limits, jobs.

use axum::extract::{FromRequest, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use brisk_core::{Request, Task};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::AppError;
use crate::AppState;

/// A language pair served by a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub model: String,
    pub source: String,
    pub target: String,
}

/// Every pair this server translates, by model name order.
pub fn pairs(state: &AppState) -> Vec<Pair> {
    let registry = &state.registry;
    registry
        .model_names()
        .into_iter()
        .filter(|m| registry.task_of(m).ok() == Some(Task::Translation))
        .filter_map(|model| {
            let (source, target) = registry.language_pair(&model)?;
            Some(Pair {
                model,
                source,
                target,
            })
        })
        .collect()
}

fn served(pairs: &[Pair]) -> String {
    if pairs.is_empty() {
        return "none: no translation model is configured".into();
    }
    pairs
        .iter()
        .map(|p| format!("{}->{} ({})", p.source, p.target, p.model))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `POST /translate`'s body (JSON or an urlencoded form, as LibreTranslate
/// takes both).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"q": "Where is the library?", "source": "en", "target": "pt", "format": "text"}))]
pub struct TranslateRequest {
    /// A text or a list of texts.
    #[schema(required = true)]
    pub q: Option<Value>,
    /// ISO 639-1 code, or `auto` to detect it among the served sources.
    #[schema(required = true)]
    pub source: Option<String>,
    #[schema(required = true)]
    pub target: Option<String>,
    /// `text` (default) or `html` (tags kept, text between them translated).
    pub format: Option<String>,
    /// Only 0: decoding is greedy and yields one translation.
    pub alternatives: Option<u32>,
    /// LibreTranslate's key field; brisk reads keys from `Authorization`.
    pub api_key: Option<String>,
    /// brisk's extension: the model to use instead of the pair's.
    pub model: Option<String>,
}

/// `POST /detect`'s body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectRequest {
    #[schema(required = true)]
    pub q: Option<String>,
    pub api_key: Option<String>,
}

/// Reads JSON or `application/x-www-form-urlencoded` into `T`.
async fn body<T: serde::de::DeserializeOwned + Default>(
    req: axum::extract::Request,
) -> Result<T, AppError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        let axum::Form(v) =
            axum::Form::<T>::from_request(req, &())
                .await
                .map_err(|e| AppError::BadRequest {
                    message: e.body_text(),
                    param: None,
                })?;
        Ok(v)
    } else {
        let crate::error::Json(v) = crate::error::Json::<T>::from_request(req, &()).await?;
        Ok(v)
    }
}

/// The texts of `q`, and whether it was a list (the answer mirrors it).
fn texts(q: Option<Value>) -> Result<(Vec<String>, bool), AppError> {
    let bad = |m: &str| AppError::bad(m, "q");
    match q {
        None | Some(Value::Null) => Err(bad("'q' is required")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(bad("'q' must contain text")),
        Some(Value::String(s)) => Ok((vec![s], false)),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(bad("'q' must not be an empty list"));
            }
            let texts = items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s),
                    Value::String(_) => Err(AppError::bad(format!("q[{i}] is empty"), "q")),
                    _ => Err(AppError::bad(format!("q[{i}] must be a string"), "q")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((texts, true))
        }
        Some(_) => Err(bad("'q' must be a string or a list of strings")),
    }
}

/// The language of `text` among `candidates` (ISO 639-1), with
/// LibreTranslate's confidence (0–100). whatlang knows 69 languages by
/// their trigram profiles; restricting it to the served sources keeps it
/// from answering a language no model can take.
pub fn detect(text: &str, candidates: &[String]) -> Option<(String, f64)> {
    let allow: Vec<(whatlang::Lang, &String)> = candidates
        .iter()
        .filter_map(|c| Some((iso639_3(c)?, c)))
        .collect();
    match allow.as_slice() {
        [] => None,
        // One candidate: nothing to choose; whatlang's confidence still
        // says how sure it is that the text is in it at all.
        [(lang, code)] => {
            let info = whatlang::detect(text);
            let conf = match info {
                Some(i) if i.lang() == *lang => i.confidence(),
                _ => 0.0,
            };
            Some(((*code).clone(), (conf * 100.0).round()))
        }
        _ => {
            let detector =
                whatlang::Detector::with_allowlist(allow.iter().map(|(l, _)| *l).collect());
            let info = detector.detect(text)?;
            let code = allow.iter().find(|(l, _)| *l == info.lang())?.1;
            Some((code.clone(), (info.confidence() * 100.0).round()))
        }
    }
}

/// ISO 639-1 → whatlang's language, for the languages Firefox Translations
/// and argos models cover.
fn iso639_3(code: &str) -> Option<whatlang::Lang> {
    use whatlang::Lang::*;
    Some(match code {
        "en" => Eng,
        "pt" => Por,
        "es" => Spa,
        "fr" => Fra,
        "de" => Deu,
        "it" => Ita,
        "nl" => Nld,
        "pl" => Pol,
        "ru" => Rus,
        "uk" => Ukr,
        "cs" => Ces,
        "bg" => Bul,
        "et" => Est,
        "fa" => Pes,
        "is" => return None,
        "nb" | "no" => Nob,
        "ur" => Urd,
        "hi" => Hin,
        "ar" => Ara,
        "tr" => Tur,
        "ja" => Jpn,
        "ko" => Kor,
        "zh" => Cmn,
        "el" => Ell,
        "hu" => Hun,
        "ro" => Ron,
        "sv" => Swe,
        "da" => Dan,
        "fi" => Fin,
        "he" => Heb,
        "id" => Ind,
        "vi" => Vie,
        "th" => Tha,
        _ => return None,
    })
}

/// A piece of a text: translated, or kept as it is (HTML tags, blank runs
/// between them).
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Translate(String),
    Keep(String),
}

/// Cuts an HTML text into tags and the text between them, keeping every
/// byte, so joining the pieces after translation keeps the markup. Plain
/// text is one piece: the backend splits every text into sentences itself
/// (brisk-translate's backend), so it is not split here too.
fn pieces(text: &str, html: bool) -> Vec<Piece> {
    let mut out = Vec::new();
    let push_text = |t: &str, out: &mut Vec<Piece>| {
        if t.trim().is_empty() {
            // Blank runs between tags are not text to translate (the
            // engine refuses blank inputs).
            if !t.is_empty() {
                out.push(Piece::Keep(t.to_string()));
            }
        } else {
            out.push(Piece::Translate(t.to_string()));
        }
    };
    if !html {
        push_text(text, &mut out);
        return out;
    }
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        push_text(&rest[..open], &mut out);
        match rest[open..].find('>') {
            Some(close) => {
                out.push(Piece::Keep(rest[open..open + close + 1].to_string()));
                rest = &rest[open + close + 1..];
            }
            None => {
                // A lone '<' is text, not a tag.
                push_text(&rest[open..], &mut out);
                rest = "";
            }
        }
    }
    push_text(rest, &mut out);
    out
}

/// Unescapes the few entities text between tags commonly holds, and
/// escapes them back after translation.
fn unescape(s: &str) -> String {
    s.replace("&nbsp;", "\u{a0}")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
}

/// Translates `texts` with `model`: every sentence of every text in one
/// engine request (one batch on the model thread, one cache entry).
async fn translate_texts(
    state: &AppState,
    headers: &HeaderMap,
    model: &str,
    texts: &[String],
    html: bool,
) -> Result<(Vec<String>, brisk_engine::CacheStatus), AppError> {
    let split: Vec<Vec<Piece>> = texts.iter().map(|t| pieces(t, html)).collect();
    let sentences: Vec<String> = split
        .iter()
        .flatten()
        .filter_map(|p| match p {
            Piece::Translate(s) if html => Some(unescape(s)),
            Piece::Translate(s) => Some(s.clone()),
            Piece::Keep(_) => None,
        })
        .collect();
    let (translated, status) = if sentences.is_empty() {
        (Vec::new(), brisk_engine::CacheStatus::Bypass)
    } else {
        match state
            .registry
            .infer_with(
                model,
                Request::Translate { texts: sentences },
                super::cache::mode(headers),
            )
            .await?
        {
            (brisk_core::Response::Translate { texts, .. }, status) => (texts, status),
            (other, _) => return Err(super::uploads::unexpected(&other)),
        }
    };
    let mut translated = translated.into_iter();
    let out = split
        .into_iter()
        .map(|pieces| {
            pieces
                .into_iter()
                .map(|p| match p {
                    Piece::Keep(s) => s,
                    Piece::Translate(_) if html => escape(&translated.next().unwrap_or_default()),
                    Piece::Translate(_) => translated.next().unwrap_or_default(),
                })
                .collect::<String>()
        })
        .collect();
    Ok((out, status))
}

/// `POST /translate`.
#[utoipa::path(post, path = "/translate", tag = "translation",
    request_body(content((TranslateRequest = "application/json"), (TranslateRequest = "application/x-www-form-urlencoded"))),
    responses((status = 200, description = "`translatedText` (a string, or a list when `q` is one); `detectedLanguage` with `source: auto`",
               headers(("x-brisk-cache" = String, description = "hit, miss or bypass")),
               body = crate::openapi::schemas::TranslateResponse),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody),
              (status = "5XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn translate(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, AppError> {
    let req: TranslateRequest = body(req).await?;
    let (texts, is_list) = texts(req.q)?;
    state.config.limits.check_list(
        "q",
        state.config.limits.max_inputs,
        texts.iter().map(String::as_str),
    )?;
    let html = match req.format.as_deref() {
        None | Some("text") => false,
        Some("html") => true,
        Some(other) => {
            return Err(AppError::bad(
                format!("format must be text or html, got '{other}'"),
                "format",
            ))
        }
    };
    if req.alternatives.is_some_and(|a| a > 0) {
        return Err(AppError::bad(
            "alternatives are not supported: translation is greedy and yields one text",
            "alternatives",
        ));
    }
    let target = req
        .target
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::bad("'target' is required", "target"))?;
    let source = req
        .source
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::bad("'source' is required (a code, or auto)", "source"))?;
    let all = pairs(&state);
    let to_target: Vec<&Pair> = all.iter().filter(|p| p.target == target).collect();
    // `auto`: detect among the sources that have a model into the target.
    let detected: Option<(String, f64)> = if source == "auto" {
        let candidates: Vec<String> = to_target.iter().map(|p| p.source.clone()).collect();
        let joined = texts.join("\n");
        let plain = if html {
            pieces(&joined, true)
                .into_iter()
                .filter_map(|p| match p {
                    Piece::Translate(s) => Some(s),
                    Piece::Keep(_) => None,
                })
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            joined
        };
        Some(detect(&plain, &candidates).ok_or_else(|| {
            AppError::bad(
                format!(
                    "cannot detect a source language with a model into '{target}'; served pairs: {}",
                    served(&all)
                ),
                "source",
            )
        })?)
    } else {
        None
    };
    let source_code = detected
        .as_ref()
        .map_or(source.as_str(), |(c, _)| c.as_str());
    let model = match req.model.filter(|m| !m.is_empty()) {
        Some(m) => {
            let pair = all.iter().find(|p| p.model == m).ok_or_else(|| {
                AppError::bad(
                    format!(
                        "'{m}' is not a translation model; served pairs: {}",
                        served(&all)
                    ),
                    "model",
                )
            })?;
            if pair.source != source_code || pair.target != target {
                return Err(AppError::bad(
                    format!(
                        "model '{m}' translates {}->{}, not {source_code}->{target}",
                        pair.source, pair.target
                    ),
                    "model",
                ));
            }
            m
        }
        None => to_target
            .iter()
            .find(|p| p.source == source_code)
            .map(|p| p.model.clone())
            .ok_or_else(|| {
                AppError::bad(
                    format!(
                        "no model translates {source_code}->{target}; served pairs: {}",
                        served(&all)
                    ),
                    if all.iter().any(|p| p.source == source_code) {
                        "target"
                    } else {
                        "source"
                    },
                )
            })?,
    };
    let (out, status) = translate_texts(&state, &headers, &model, &texts, html).await?;
    let mut body = if is_list {
        json!({ "translatedText": out })
    } else {
        json!({ "translatedText": out.into_iter().next().unwrap_or_default() })
    };
    if let Some((language, confidence)) = detected {
        let one = json!({ "language": language, "confidence": confidence });
        body["detectedLanguage"] = if is_list {
            json!(vec![one; texts.len()])
        } else {
            one
        };
    }
    Ok(super::cache::tag(axum::Json(body).into_response(), status))
}

/// `GET /languages`: each source language with the targets it reaches.
#[utoipa::path(get, path = "/languages", tag = "translation",
    responses((status = 200, description = "The languages, each with its targets", body = Vec<crate::openapi::schemas::Language>),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn languages(State(state): State<AppState>) -> Response {
    let all = pairs(&state);
    let mut codes: Vec<&str> = all
        .iter()
        .flat_map(|p| [p.source.as_str(), p.target.as_str()])
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let list: Vec<Value> = codes
        .into_iter()
        .map(|code| {
            let targets: Vec<&str> = all
                .iter()
                .filter(|p| p.source == code)
                .map(|p| p.target.as_str())
                .collect();
            json!({ "code": code, "name": name(code), "targets": targets })
        })
        .collect();
    axum::Json(list).into_response()
}

/// `POST /detect`: the language of `q` among the served source languages.
#[utoipa::path(post, path = "/detect", tag = "translation",
    request_body(content((DetectRequest = "application/json"), (DetectRequest = "application/x-www-form-urlencoded"))),
    responses((status = 200, description = "Candidates, most likely first", body = Vec<crate::openapi::schemas::DetectedLanguage>),
              (status = "4XX", description = crate::openapi::ERRORS, body = crate::openapi::schemas::ErrorBody)))]
pub async fn detect_language(
    State(state): State<AppState>,
    req: axum::extract::Request,
) -> Result<Response, AppError> {
    let req: DetectRequest = body(req).await?;
    let q = req
        .q
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| AppError::bad("'q' must contain text", "q"))?;
    let all = pairs(&state);
    let mut sources: Vec<String> = all.iter().map(|p| p.source.clone()).collect();
    sources.sort();
    sources.dedup();
    let found: Vec<Value> = detect(&q, &sources)
        .map(|(language, confidence)| json!({ "language": language, "confidence": confidence }))
        .into_iter()
        .collect();
    Ok(axum::Json(found).into_response())
}

fn name(code: &str) -> String {
    match code {
        "en" => "English",
        "pt" => "Portuguese",
        "es" => "Spanish",
        "fr" => "French",
        "de" => "German",
        "it" => "Italian",
        "ur" => "Urdu",
        "hi" => "Hindi",
        "ar" => "Arabic",
        "ru" => "Russian",
        "nl" => "Dutch",
        "pl" => "Polish",
        "uk" => "Ukrainian",
        "cs" => "Czech",
        "tr" => "Turkish",
        "ja" => "Japanese",
        "ko" => "Korean",
        "zh" => "Chinese",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(p: &[Piece], f: impl Fn(&str) -> String) -> String {
        p.iter()
            .map(|p| match p {
                Piece::Keep(s) => s.clone(),
                Piece::Translate(s) => f(s),
            })
            .collect()
    }

    #[test]
    fn pieces_keep_every_byte_and_html_tags() {
        let text = "  Hello there. How are you?\n\nFine!  ";
        let p = pieces(text, false);
        assert_eq!(join(&p, str::to_string), text);
        // Plain text goes whole to the backend, which splits sentences.
        assert_eq!(p, vec![Piece::Translate(text.to_string())]);

        let html = r#"<p class="x">Good morning.</p><br/><b>Read <i>this</i> book.</b> a < b"#;
        let p = pieces(html, true);
        assert_eq!(join(&p, str::to_string), html);
        let upper = join(&p, |s| s.to_uppercase());
        assert!(
            upper
                .starts_with(r#"<p class="x">GOOD MORNING.</p><br/><b>READ <i>THIS</i> BOOK.</b>"#),
            "{upper}"
        );
    }

    #[test]
    fn q_as_string_or_list_and_refusals() {
        assert_eq!(
            texts(Some(json!("hi"))).expect("ok"),
            (vec!["hi".to_string()], false)
        );
        assert_eq!(
            texts(Some(json!(["a", "b"]))).expect("ok"),
            (vec!["a".to_string(), "b".to_string()], true)
        );
        for bad in [
            json!(""),
            json!([]),
            json!([1]),
            json!(["a", " "]),
            json!({"x": 1}),
            Value::Null,
        ] {
            assert!(texts(Some(bad.clone())).is_err(), "{bad}");
        }
        assert!(texts(None).is_err());
    }

    #[test]
    fn detection_chooses_among_served_sources() {
        let both = vec!["en".to_string(), "pt".to_string()];
        let (l, c) =
            detect("Where is the library? I would like to read a book.", &both).expect("en");
        assert_eq!(l, "en");
        assert!(c > 50.0, "{c}");
        let (l, _) = detect(
            "Onde fica a biblioteca? Eu gostaria de ler um livro.",
            &both,
        )
        .expect("pt");
        assert_eq!(l, "pt");
        assert_eq!(detect("hello", &[]), None);
    }

    #[test]
    fn entities_round_trip() {
        let s = "Tom &amp; Jerry &lt;3";
        assert_eq!(unescape(s), "Tom & Jerry <3");
        assert_eq!(escape(&unescape(s)), s);
    }
}
