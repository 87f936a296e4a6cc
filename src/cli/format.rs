//! docker's `--format` for listings: `table` (the default columns), `json`
//! (one object per line), or a template — the part of Go's template
//! language people put in scripts: `{{.Field}}`, `{{json .}}` and
//! `{{json .Field}}`, with `table ` in front for a header row and aligned
//! columns. As docker does, a literal `\t` or `\n` in the format is a tab or
//! a newline.

use std::io::Write;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

/// A listing's fields: (template name, table header), in default order.
pub type Fields = [(&'static str, &'static str)];

pub enum Format {
    Table,
    Json,
    Template { table: bool, parts: Vec<Part> },
}

#[derive(Debug, PartialEq)]
pub enum Part {
    Text(String),
    Field(String),
    /// `{{json .}}` (None) or `{{json .Field}}`.
    Json(Option<String>),
}

impl Format {
    pub fn parse(input: &str, fields: &Fields) -> Result<Format> {
        match input {
            "" | "table" => return Ok(Format::Table),
            "json" => return Ok(Format::Json),
            _ => {}
        }
        let (table, body) = match input.strip_prefix("table") {
            Some(rest) if rest.starts_with([' ', '\t']) || rest.starts_with("\\t") => (true, rest),
            _ => (false, input),
        };
        let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
        let parts = parse_template(&body)?;
        for part in &parts {
            if let Part::Field(name) | Part::Json(Some(name)) = part {
                if !fields.iter().any(|(f, _)| f == name) {
                    let known: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
                    bail!("template: can't evaluate field {name} (fields: {})", known.join(", "));
                }
            }
        }
        Ok(Format::Template { table, parts })
    }

    /// `rows` (objects keyed by field name) as this format writes them: a
    /// JSON object per line, or the template per row (with a header and
    /// aligned columns for `table …`). `Table` is the caller's to write.
    pub fn text(&self, rows: &[Value], fields: &Fields) -> String {
        let empty = Map::new();
        let object = |row: &'_ Value| row.as_object().unwrap_or(&empty).clone();
        match self {
            Format::Table => String::new(),
            Format::Json => rows.iter().map(|row| format!("{row}\n")).collect(),
            Format::Template { table: false, parts } => {
                rows.iter().map(|row| render(parts, &object(row)) + "\n").collect()
            }
            Format::Template { table: true, parts } => {
                let headers: Map<String, Value> =
                    fields.iter().map(|(f, h)| (f.to_string(), Value::from(*h))).collect();
                let lines: Vec<String> = std::iter::once(render(parts, &headers))
                    .chain(rows.iter().map(|row| render(parts, &object(row))))
                    .collect();
                align(&lines)
            }
        }
    }

    pub fn print(&self, rows: &[Value], fields: &Fields) -> Result<()> {
        std::io::stdout().lock().write_all(self.text(rows, fields).as_bytes())?;
        Ok(())
    }
}

fn parse_template(body: &str) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        let Some(len) = rest[start..].find("}}") else {
            bail!("template: unclosed action in {body:?}");
        };
        let action = rest[start + 2..start + len].trim();
        let words: Vec<&str> = action.split_whitespace().collect();
        parts.push(match words.as_slice() {
            [field] if field.len() > 1 && field.starts_with('.') => Part::Field(field[1..].to_string()),
            ["json", "."] => Part::Json(None),
            ["json", field] if field.starts_with('.') => Part::Json(Some(field[1..].to_string())),
            _ => bail!("template: unsupported action {{{{{action}}}}} (supported: {{{{.Field}}}}, {{{{json .}}}}, {{{{json .Field}}}})"),
        });
        rest = &rest[start + len + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

fn render(parts: &[Part], row: &Map<String, Value>) -> String {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    parts
        .iter()
        .map(|part| match part {
            Part::Text(t) => t.clone(),
            Part::Field(f) => text(row.get(f)),
            Part::Json(None) => Value::Object(row.clone()).to_string(),
            Part::Json(Some(f)) => row.get(f).cloned().unwrap_or(Value::Null).to_string(),
        })
        .collect()
}

/// Align tab-separated cells as docker's tables do (Go's tabwriter with
/// minimum width 10 and padding 3 — the crate's minimum excludes the
/// padding — and the last cell of a line not padded);
/// trailing blanks are dropped.
pub fn align(lines: &[String]) -> String {
    use std::io::Write;
    let mut table = tabwriter::TabWriter::new(Vec::new()).minwidth(10 - 3).padding(3);
    for line in lines {
        // Writing to memory cannot fail.
        let _ = writeln!(table, "{line}");
    }
    let aligned = table.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&aligned)
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &Fields = &[("ID", "CONTAINER ID"), ("Names", "NAMES"), ("Status", "STATUS")];

    fn row(id: &str, name: &str) -> Value {
        serde_json::json!({"ID": id, "Names": name, "Status": "Up 1 second"})
    }

    /// The text of `rows` (a one-row template without its line end).
    fn rendered(format: &str, rows: &[Value]) -> String {
        let format = Format::parse(format, FIELDS).unwrap();
        let text = format.text(rows, FIELDS);
        match format {
            Format::Template { table: false, .. } => text.strip_suffix('\n').unwrap_or(&text).to_string(),
            _ => text,
        }
    }

    #[test]
    fn fields_text_and_escapes() {
        assert_eq!(rendered("{{.Names}}", &[row("abc", "web")]), "web");
        assert_eq!(rendered("{{.ID}}: {{ .Names }}\\n", &[row("abc", "web")]), "abc: web\n");
        assert_eq!(rendered("{{.ID}}\\t{{.Names}}", &[row("a", "b")]), "a\tb");
    }

    #[test]
    fn json_of_the_row_or_a_field() {
        assert_eq!(rendered("{{json .Names}}", &[row("a", "web")]), "\"web\"");
        let whole: Value = serde_json::from_str(&rendered("{{json .}}", &[row("a", "web")])).unwrap();
        assert_eq!(whole["Status"], "Up 1 second");
    }

    #[test]
    fn table_has_headers_and_docker_alignment() {
        let out = rendered(
            "table {{.ID}}\\t{{.Names}}",
            &[row("abc", "web"), row("d", "a-long-name")],
        );
        assert_eq!(
            out,
            "CONTAINER ID   NAMES\nabc            web\nd              a-long-name\n"
        );
        let out = rendered("table {{.Names}}\\t{{.ID}}", &[row("abc", "web")]);
        assert_eq!(out, "NAMES     CONTAINER ID\nweb       abc\n");
    }

    #[test]
    fn unknown_fields_and_actions_are_refused() {
        let err = Format::parse("{{.Nope}}", FIELDS).err().unwrap().to_string();
        assert!(err.contains("can't evaluate field Nope"), "{err}");
        let err = Format::parse("{{range .}}", FIELDS).err().unwrap().to_string();
        assert!(err.contains("unsupported action"), "{err}");
        let err = Format::parse("{{.ID", FIELDS).err().unwrap().to_string();
        assert!(err.contains("unclosed"), "{err}");
        assert!(matches!(Format::parse("json", FIELDS), Ok(Format::Json)));
        assert!(matches!(Format::parse("table", FIELDS), Ok(Format::Table)));
    }
}
