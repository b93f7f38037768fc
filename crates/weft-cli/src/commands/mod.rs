//! Client commands: each one is a few HTTP calls to a running `weft up` and a way to print
//! the answer. They share [`crate::client::Client`] for transport and error handling and
//! [`crate::output`] for printing.

mod apikey;
mod batch;
mod breakers;
mod flow;
mod limits;
mod ops;
mod run;
mod schedule;
mod versions;

use crate::args::InputArgs;
use anyhow::Context;
use serde_json::Value;

pub use apikey::apikey;
pub use breakers::breakers;
pub use flow::run as flow;
pub use limits::limit;
pub use ops::{dlq, nodes, openapi, queue, workers};
pub use run::run;
pub use schedule::schedule;

/// The run input from `--input` or `--input-file`; an empty object when neither is given.
pub fn read_input(args: &InputArgs) -> anyhow::Result<Value> {
    if let Some(text) = &args.input {
        return serde_json::from_str(text).context("--input is not valid JSON");
    }
    if let Some(path) = &args.input_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --input-file {}", path.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("--input-file {} is not valid JSON", path.display()));
    }
    Ok(Value::Object(Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn input_comes_from_text_or_file_and_defaults_to_an_object() {
        let none = InputArgs {
            input: None,
            input_file: None,
        };
        assert_eq!(read_input(&none).unwrap(), json!({}));
        let text = InputArgs {
            input: Some(r#"{"a": 1}"#.into()),
            input_file: None,
        };
        assert_eq!(read_input(&text).unwrap(), json!({"a": 1}));
        let bad = InputArgs {
            input: Some("{".into()),
            input_file: None,
        };
        assert!(format!("{:#}", read_input(&bad).unwrap_err()).contains("--input"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.json");
        std::fs::write(&path, "[1, 2]").unwrap();
        let file = InputArgs {
            input: None,
            input_file: Some(path),
        };
        assert_eq!(read_input(&file).unwrap(), json!([1, 2]));
    }
}
