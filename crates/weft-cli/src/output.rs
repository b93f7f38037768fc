//! Printing data for people (aligned tables) and for programs (the server's JSON). Data goes
//! to stdout; everything else goes to stderr, so `weft ... -o json | jq` always works.

use serde_json::Value;
use std::io::Write;

/// Longest cell a table shows before truncating.
pub const MAX_CELL: usize = 60;

/// Rows under a header, printed with aligned columns.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    max_cell: usize,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
            max_cell: MAX_CELL,
        }
    }

    /// Truncates cells at `max` characters instead of [`MAX_CELL`].
    pub fn max_cell(mut self, max: usize) -> Self {
        self.max_cell = max;
        self
    }

    /// Adds a row; cells are kept on one line and truncated (see [`Table::max_cell`]).
    pub fn row(&mut self, cells: Vec<String>) {
        let max = self.max_cell;
        self.rows
            .push(cells.into_iter().map(|c| one_line(&c, max)).collect());
    }

    /// The table as text, one line per row, columns separated by two spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (i, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    let pad = widths[i] - cell.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        print_stdout(&self.render());
    }
}

/// Writes to stdout, ignoring a closed pipe (`weft ... | head`).
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints a JSON value, pretty, to stdout.
pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print_stdout(&format!("{text}\n"));
}

/// `text` on one line, cut to `max` characters with an ellipsis.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A JSON value as a table cell: strings bare, `null` empty, anything else as JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A millisecond timestamp as UTC RFC 3339 (seconds precision); empty when absent.
pub fn time(v: &Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The array under `key`, or the value itself if it is an array.
pub fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .or_else(|| v.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_truncate() {
        let mut t = Table::new(&["NODE", "STATE", "OUTPUT"]);
        t.row(vec!["a".into(), "succeeded".into(), "x".repeat(100)]);
        t.row(vec!["longer".into(), "dead".into(), "line\nbreak".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NODE    STATE      OUTPUT");
        assert!(lines[1].starts_with("a       succeeded  xxx"));
        assert!(lines[1].ends_with('…'));
        assert_eq!(lines[1].chars().count(), 19 + MAX_CELL);
        assert_eq!(lines[2], "longer  dead       line break");
    }

    #[test]
    fn cells_and_times() {
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!("s")), "s");
        assert_eq!(cell(&json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(time(&json!(0)), "1970-01-01T00:00:00Z");
        assert_eq!(time(&json!(null)), "");
        assert_eq!(list(&json!({"runs": [1, 2]}), "runs").len(), 2);
        assert_eq!(list(&json!([1]), "runs").len(), 1);
        assert!(list(&json!({}), "runs").is_empty());
    }
}
