//! Named message templates: files under `notifier.templates_dir`, rendered with minijinja.
//! `<name>.text.j2` renders the text of a text message; `<name>.post.json.j2` and
//! `<name>.card.json.j2` render post and card JSON, where every `{{ value }}` is written as a
//! JSON value (quotes and escapes included), so variables cannot break the JSON. Every file is
//! compiled at load (a broken template stops the start with its name and line), and undefined
//! variables are errors, never empty strings.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;

use crate::message::{self, Content, Rejection};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown template {0}")]
    Unknown(String),
    #[error("template {template}: missing variable {variable}")]
    MissingVariable { template: String, variable: String },
    #[error("template variables: {0}")]
    BadVariables(String),
    #[error("template {template} does not render: {detail}")]
    Render { template: String, detail: String },
    #[error("template {template} rendered invalid content: {detail}")]
    Output { template: String, detail: String },
    #[error("templates folder {path}: {detail}")]
    Load { path: String, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Post,
    Card,
}

/// The loaded templates (cheap to share behind an `Arc`).
pub struct Templates {
    env: Environment<'static>,
    kinds: BTreeMap<String, Kind>,
}

impl Templates {
    pub fn empty() -> Self {
        Self {
            env: Environment::new(),
            kinds: BTreeMap::new(),
        }
    }

    /// Loads and compiles every `*.text.j2`, `*.post.json.j2` and `*.card.json.j2` in `dir`.
    pub fn load(dir: &Path) -> Result<Self, TemplateError> {
        let err = |detail: String| TemplateError::Load {
            path: dir.display().to_string(),
            detail,
        };
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".json.j2") {
                AutoEscape::Json
            } else {
                AutoEscape::None
            }
        });
        let mut kinds = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| err(e.to_string()))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let (name, kind) = if let Some(n) = file.strip_suffix(".text.j2") {
                (n, Kind::Text)
            } else if let Some(n) = file.strip_suffix(".post.json.j2") {
                (n, Kind::Post)
            } else if let Some(n) = file.strip_suffix(".card.json.j2") {
                (n, Kind::Card)
            } else {
                continue;
            };
            if name.is_empty() {
                return Err(err(format!(
                    "{file}: a template needs a name before the suffix"
                )));
            }
            if kinds.contains_key(name) {
                return Err(err(format!("two templates are named {name}")));
            }
            let source =
                std::fs::read_to_string(entry.path()).map_err(|e| err(format!("{file}: {e}")))?;
            env.add_template_owned(file.clone(), source)
                .map_err(|e| err(format!("{file}: {e:#}")))?;
            kinds.insert(name.to_string(), kind);
        }
        Ok(Self { env, kinds })
    }

    pub fn names(&self) -> Vec<String> {
        self.kinds.keys().cloned().collect()
    }

    fn file(name: &str, kind: Kind) -> String {
        match kind {
            Kind::Text => format!("{name}.text.j2"),
            Kind::Post => format!("{name}.post.json.j2"),
            Kind::Card => format!("{name}.card.json.j2"),
        }
    }

    /// Renders template `name` with `vars` (a JSON object) into a checked message.
    pub fn render(&self, name: &str, vars: &Value) -> Result<Content, Rejection> {
        let kind = *self
            .kinds
            .get(name)
            .ok_or_else(|| TemplateError::Unknown(name.to_string()))?;
        if !vars.is_object() {
            return Err(
                TemplateError::BadVariables("variables must be a JSON object".into()).into(),
            );
        }
        let file = Self::file(name, kind);
        let tmpl = self
            .env
            .get_template(&file)
            .map_err(|_| TemplateError::Unknown(name.to_string()))?;
        let mut wanted: Vec<String> = tmpl.undeclared_variables(false).into_iter().collect();
        wanted.sort();
        if let Some(missing) = wanted.iter().find(|v| vars.get(v.as_str()).is_none()) {
            return Err(TemplateError::MissingVariable {
                template: name.to_string(),
                variable: missing.clone(),
            }
            .into());
        }
        let out = tmpl.render(vars).map_err(|e| {
            if e.kind() == minijinja::ErrorKind::UndefinedError {
                TemplateError::MissingVariable {
                    template: name.to_string(),
                    variable: e.detail().unwrap_or("a value").to_string(),
                }
            } else {
                TemplateError::Render {
                    template: name.to_string(),
                    detail: format!("{e:#}"),
                }
            }
        })?;
        let output_err = |r: Rejection| -> Rejection {
            match r {
                Rejection::TooLarge { .. } => r,
                other => TemplateError::Output {
                    template: name.to_string(),
                    detail: other.to_string(),
                }
                .into(),
            }
        };
        match kind {
            Kind::Text => message::text(&out).map_err(output_err),
            Kind::Post => message::post(&out).map_err(output_err),
            Kind::Card => message::card(&out).map_err(output_err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, s) in files {
            std::fs::write(d.path().join(n), s).unwrap();
        }
        d
    }

    #[test]
    fn renders_each_kind_with_json_escaping() {
        let d = dir(&[
            (
                "hello.text.j2",
                "Hello {{ name }}, form {{ form }} is {{ state }}.",
            ),
            (
                "approved.card.json.j2",
                r#"{"schema":"2.0","header":{"title":{"tag":"plain_text","content":{{ title }}}},"body":{"elements":[]}}"#,
            ),
            (
                "news.post.json.j2",
                r#"{"zh_cn":{"title":{{ title }},"content":[[{"tag":"text","text":{{ body }}}]]}}"#,
            ),
            ("README.md", "not a template"),
        ]);
        let t = Templates::load(d.path()).unwrap();
        assert_eq!(t.names(), vec!["approved", "hello", "news"]);
        let c = t
            .render(
                "hello",
                &json!({"name": "张三", "form": "F-1", "state": "approved"}),
            )
            .unwrap();
        assert_eq!(c.content["text"], "Hello 张三, form F-1 is approved.");
        let c = t
            .render("approved", &json!({"title": "a \"quoted\" title"}))
            .unwrap();
        assert_eq!(c.msg_type, "interactive");
        assert_eq!(
            c.content["header"]["title"]["content"],
            "a \"quoted\" title"
        );
        let c = t
            .render("news", &json!({"title": "T", "body": "b"}))
            .unwrap();
        assert_eq!(c.msg_type, "post");
    }

    #[test]
    fn unknown_template_and_missing_variable_are_refused() {
        let d = dir(&[("hello.text.j2", "Hello {{ name }}")]);
        let t = Templates::load(d.path()).unwrap();
        assert_eq!(
            t.render("nope", &json!({})).unwrap_err(),
            Rejection::Template(TemplateError::Unknown("nope".into()))
        );
        assert_eq!(
            t.render("hello", &json!({})).unwrap_err(),
            Rejection::Template(TemplateError::MissingVariable {
                template: "hello".into(),
                variable: "name".into()
            })
        );
    }

    #[test]
    fn a_broken_template_fails_the_load() {
        let d = dir(&[("bad.text.j2", "Hello {{ name ")]);
        let e = Templates::load(d.path()).err().unwrap();
        assert!(e.to_string().contains("bad.text.j2"), "{e}");
    }
}
