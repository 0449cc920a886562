//! Chat templates: the Jinja template a GGUF file carries in
//! `tokenizer.chat_template`, rendered with minijinja the way Hugging Face's
//! `apply_chat_template` does (`trim_blocks`, `lstrip_blocks`, Python string
//! methods, `raise_exception`), with ChatML as the fallback.

use std::collections::BTreeMap;

use brisk_core::ChatMessage;
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Value};

const TEMPLATE_NAME: &str = "chat";

/// A model's chat template, compiled once at load.
pub struct ChatTemplate {
    env: Option<Environment<'static>>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("jinja", &self.env.is_some())
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
        Self {
            env,
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
        env.add_template_owned(TEMPLATE_NAME, source.to_string())?;
        Ok(env)
    }

    /// Whether the model's own template is in use (else ChatML).
    pub fn has_template(&self) -> bool {
        self.env.is_some()
    }

    /// Renders with the model's template, or an error if there is none or
    /// it fails on these messages.
    pub fn render_jinja(&self, messages: &[ChatMessage]) -> Result<String, String> {
        let env = self.env.as_ref().ok_or("the model has no chat template")?;
        let template = env.get_template(TEMPLATE_NAME).map_err(|e| e.to_string())?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                map([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let ctx = map([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(true)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ]);
        template.render(ctx).map_err(|e| {
            // minijinja's alternate form includes the cause chain.
            format!("{e:#}")
        })
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[ChatMessage]) -> String {
        if self.env.is_some() {
            match self.render_jinja(messages) {
                Ok(text) => return text,
                Err(e) => tracing::warn!(error = %e, "chat template failed; using ChatML"),
            }
        }
        render_chatml(messages)
    }
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
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn smollm2_template_adds_default_system_prompt() {
        let t = ChatTemplate::new(Some(SMOLLM2), "<|im_start|>", "<|im_end|>");
        assert!(t.has_template());
        assert_eq!(
            t.render(&[msg("user", "Hi")]),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&[msg("system", "Be brief."), msg("user", "Hi")]),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_bos_and_trim_blocks() {
        let src = "{{ bos_token }}{% for m in messages %}\n  {{ m.role.upper() }}: {{ m.content.strip() }}{{ eos_token }}\n{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}";
        let t = ChatTemplate::new(Some(src), "<s>", "</s>");
        assert_eq!(
            t.render_jinja(&[msg("user", "  hello  ")])
                .expect("renders"),
            "<s>  USER: hello</s>\nA:"
        );
    }

    #[test]
    fn failing_or_broken_templates_fall_back_to_chatml() {
        let raising = "{{ raise_exception('Conversation roles must alternate') }}";
        let t = ChatTemplate::new(Some(raising), "", "");
        let err = t.render_jinja(&[msg("user", "x")]).expect_err("raises");
        assert!(err.contains("must alternate"), "{err}");
        assert_eq!(
            t.render(&[msg("user", "x")]),
            render_chatml(&[msg("user", "x")])
        );

        let broken = ChatTemplate::new(Some("{% for %}"), "", "");
        assert!(!broken.has_template());
        assert_eq!(
            broken.render(&[msg("user", "x")]),
            "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            ChatTemplate::chatml().render(&[]),
            "<|im_start|>assistant\n"
        );
    }
}
