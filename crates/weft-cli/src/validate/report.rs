//! The HTML report of `weft validate`: the checklist as a section ahead of `weft
//! loadtest`'s own report of the load test, in one self-contained file. When no traffic was
//! sent (the target did not answer, or was not ready) there is no load report to append,
//! and the checklist alone makes the page.

use super::score::{Checklist, Status};
use weft_loadtest::Report;
use weft_loadtest::html::{self, Check, Section, esc};

/// The checklist as a report section. A warning has no pass/fail mark of its own in the
/// load test's table, so it is shown as information with the word in its text.
pub fn section(list: &Checklist) -> Section {
    Section {
        title: format!("weft validate: score {}/100", list.score),
        intro: Some(format!(
            "{} checked: {} passed, {} warnings, {} failed, {} skipped.",
            list.target, list.passed, list.warnings, list.failures, list.skipped
        )),
        checks: list
            .checks
            .iter()
            .map(|c| Check {
                name: c.name.to_string(),
                passed: match c.status {
                    Status::Pass => Some(true),
                    Status::Fail => Some(false),
                    Status::Warn | Status::Skip => None,
                },
                detail: match c.status {
                    Status::Warn => format!("warning: {} — {}", c.summary, c.data),
                    Status::Skip => format!("skipped: {}", c.summary),
                    _ if c.data.is_null() => c.summary.clone(),
                    _ => format!("{} — {}", c.summary, c.data),
                },
            })
            .collect(),
    }
}

/// The whole page.
pub fn render(list: &Checklist, load: Option<&Report>) -> String {
    let section = section(list);
    if let Some(report) = load {
        return html::render(report, &[section]);
    }
    let rows: String = section
        .checks
        .iter()
        .map(|c| {
            let mark = match c.passed {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "",
            };
            format!(
                "<tr><td>{}</td><td>{mark}</td><td>{}</td></tr>\n",
                esc(&c.name),
                esc(&c.detail)
            )
        })
        .collect();
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:.2em .8em;vertical-align:top}}</style>\
         </head><body><h1>{title}</h1><p>{intro}</p><p>No load test was run, so this report has no figures.</p>\
         <table>\n{rows}</table></body></html>\n",
        title = esc(&section.title),
        intro = esc(section.intro.as_deref().unwrap_or_default()),
    )
}
