//! The CLI's reports: a readable one, with a `-`/`+` diff per failed
//! expectation, and `--json`.

use crate::scenario::{Mismatch, ScenarioOutcome};

fn diff(mismatch: &Mismatch) -> String {
    format!(
        "      {}:\n        - expected: {}\n        + actual:   {}\n",
        mismatch.field, mismatch.expected, mismatch.actual
    )
}

/// The human report of several scenarios, ending with `N passed, M failed`.
pub fn human(outcomes: &[ScenarioOutcome], verbose: bool) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        let steps = outcome.steps.len();
        if outcome.passed() {
            out.push_str(&format!("ok    {} ({steps} steps)\n", outcome.file));
            if verbose {
                for step in &outcome.steps {
                    let status = step
                        .exchange
                        .as_ref()
                        .map(|e| format!(" -> {}", e.status))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "      step {}: {}{status}\n",
                        step.step, step.label
                    ));
                }
            }
            continue;
        }
        out.push_str(&format!("FAIL  {}\n", outcome.file));
        if let Some(load) = &outcome.load_error {
            out.push_str("    loading the filters\n");
            out.push_str(&diff(load));
        }
        for step in outcome.steps.iter().filter(|s| !s.mismatches.is_empty()) {
            out.push_str(&format!("    step {}: {}\n", step.step, step.label));
            for mismatch in &step.mismatches {
                out.push_str(&diff(mismatch));
            }
        }
    }
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    out.push_str(&format!(
        "\n{passed} passed, {} failed\n",
        outcomes.len() - passed
    ));
    out
}

/// The machine report: an array of outcomes.
///
/// # Errors
/// Only if serialisation fails, which it does not for these types.
pub fn json(outcomes: &[ScenarioOutcome]) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(outcomes)
}
