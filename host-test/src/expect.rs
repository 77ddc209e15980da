//! Checking a scenario step's expectations against what happened.

use crate::host::Host;
use crate::prometheus::{render, StatsConfig};
use crate::request::{first, Exchange};
use crate::scenario::{Expect, Mismatch};
use crate::shared::Pairs;

fn mismatch(
    field: impl Into<String>,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> Mismatch {
    Mismatch {
        field: field.into(),
        expected: expected.into(),
        actual: actual.into(),
    }
}

fn shown(value: Option<String>) -> String {
    value.map_or_else(|| "(absent)".to_owned(), |v| format!("{v:?}"))
}

fn check_headers(
    out: &mut Vec<Mismatch>,
    what: &str,
    pairs: &Pairs,
    expected: &crate::yaml_types::HeaderList,
    absent: &[String],
) {
    for (name, value) in expected.iter() {
        let actual = first(pairs, name);
        if actual.as_deref() != Some(value.as_str()) {
            out.push(mismatch(
                format!("{what}[{name:?}]"),
                format!("{value:?}"),
                shown(actual),
            ));
        }
    }
    for name in absent {
        if let Some(actual) = first(pairs, name) {
            out.push(mismatch(
                format!("{what}_absent[{name:?}]"),
                "(absent)",
                format!("{actual:?}"),
            ));
        }
    }
}

fn exchange_checks(out: &mut Vec<Mismatch>, expect: &Expect, exchange: &Exchange) {
    if let Some(status) = expect.status {
        if exchange.status != status {
            let why = match (&exchange.local_reply, exchange.reset) {
                (_, true) => " (stream reset)".to_owned(),
                (Some(local), _) => format!(
                    " (local reply from filter {:?}: {})",
                    local.filter, local.details
                ),
                _ => String::new(),
            };
            out.push(mismatch(
                "status",
                status.to_string(),
                format!("{}{why}", exchange.status),
            ));
        }
    }
    check_headers(
        out,
        "response_headers",
        &exchange.headers,
        &expect.response_headers,
        &expect.response_headers_absent,
    );
    let upstream = exchange.upstream.as_ref();
    let upstream_headers = upstream.map(|u| u.headers.clone()).unwrap_or_default();
    if upstream.is_none()
        && (!expect.upstream_headers.0.is_empty() || expect.upstream_body.is_some())
    {
        out.push(mismatch(
            "upstream",
            "the request reaches the upstream",
            "it did not",
        ));
    } else {
        check_headers(
            out,
            "upstream_headers",
            &upstream_headers,
            &expect.upstream_headers,
            &expect.upstream_headers_absent,
        );
    }
    if let Some(called) = expect.upstream_called {
        if called != upstream.is_some() {
            out.push(mismatch(
                "upstream_called",
                called.to_string(),
                upstream.is_some().to_string(),
            ));
        }
    }
    if let (Some(body), Some(upstream)) = (&expect.upstream_body, upstream) {
        let actual = String::from_utf8_lossy(&upstream.body).into_owned();
        if *body != actual {
            out.push(mismatch(
                "upstream_body",
                format!("{body:?}"),
                format!("{actual:?}"),
            ));
        }
    }
    if let (Some(cluster), Some(upstream)) = (&expect.upstream_cluster, upstream) {
        if *cluster != upstream.cluster {
            out.push(mismatch(
                "upstream_cluster",
                cluster.clone(),
                upstream.cluster.clone(),
            ));
        }
    }
    let body = exchange.body_text();
    if let Some(expected) = &expect.body {
        if *expected != body {
            out.push(mismatch(
                "body",
                format!("{expected:?}"),
                format!("{body:?}"),
            ));
        }
    }
    if let Some(part) = &expect.body_contains {
        if !body.contains(part.as_str()) {
            out.push(mismatch(
                "body_contains",
                format!("{part:?}"),
                format!("{body:?}"),
            ));
        }
    }
    if let Some(filter) = &expect.local_reply_by {
        let actual = exchange.local_reply.as_ref().map(|l| l.filter.clone());
        if actual.as_deref() != Some(filter.as_str()) {
            out.push(mismatch(
                "local_reply_by",
                filter.clone(),
                actual.unwrap_or_else(|| "(no local reply)".to_owned()),
            ));
        }
    }
    match &expect.failure {
        Some(part) => {
            if !exchange
                .failures
                .iter()
                .any(|f| f.to_string().contains(part.as_str()))
            {
                let actual: Vec<String> =
                    exchange.failures.iter().map(ToString::to_string).collect();
                out.push(mismatch(
                    "failure",
                    format!("a failure mentioning {part:?}"),
                    format!("{actual:?}"),
                ));
            }
        }
        None => {
            for failure in &exchange.failures {
                out.push(mismatch("filter failure", "none", failure.to_string()));
            }
        }
    }
    match expect.stalled {
        Some(stalled) if stalled != exchange.stalled.is_some() => {
            out.push(mismatch(
                "stalled",
                stalled.to_string(),
                exchange
                    .stalled
                    .clone()
                    .unwrap_or_else(|| "false".to_owned()),
            ));
        }
        None if exchange.stalled.is_some() => {
            out.push(mismatch(
                "stalled",
                "the stream completes",
                exchange.stalled.clone().unwrap_or_default(),
            ));
        }
        _ => {}
    }
}

/// Every expectation of `expect` that does not hold, after a step.
pub fn check(
    expect: &Expect,
    exchange: Option<&Exchange>,
    host: &Host,
    stats: &StatsConfig,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if let Some(exchange) = exchange {
        exchange_checks(&mut out, expect, exchange);
    }
    for (name, expected) in &expect.metrics {
        let actual = host.metric(name);
        if actual != Some(*expected) {
            out.push(mismatch(
                format!("metrics[{name:?}]"),
                expected.to_string(),
                actual.map_or_else(|| "(undefined)".to_owned(), |v| v.to_string()),
            ));
        }
    }
    let metrics = host.metrics();
    for (name, expected) in &expect.histograms {
        let actual = metrics
            .iter()
            .find(|m| m.name == *name)
            .map(|m| m.samples.clone());
        if actual.as_ref() != Some(expected) {
            out.push(mismatch(
                format!("histograms[{name:?}]"),
                format!("{expected:?}"),
                actual.map_or_else(|| "(undefined)".to_owned(), |v| format!("{v:?}")),
            ));
        }
    }
    if !expect.prometheus_contains.is_empty() {
        match render(&metrics, stats) {
            Ok(text) => {
                for line in &expect.prometheus_contains {
                    if !text.lines().any(|l| l == line) {
                        out.push(mismatch("prometheus_contains", line.clone(), text.clone()));
                    }
                }
            }
            Err(e) => out.push(mismatch(
                "prometheus_contains",
                "a valid stats_config",
                e.to_string(),
            )),
        }
    }
    if !expect.logs_contain.is_empty() {
        let logs = host.logs();
        for part in &expect.logs_contain {
            if !logs.iter().any(|l| l.message.contains(part.as_str())) {
                let recent: Vec<&str> = logs
                    .iter()
                    .rev()
                    .take(5)
                    .map(|l| l.message.as_str())
                    .collect();
                out.push(mismatch(
                    "logs_contain",
                    format!("{part:?}"),
                    format!("last lines: {recent:?}"),
                ));
            }
        }
    }
    if let Some(expected) = &expect.foreign_calls {
        let actual: Vec<String> = host
            .foreign_calls()
            .into_iter()
            .map(|c| c.function)
            .collect();
        if actual != *expected {
            out.push(mismatch(
                "foreign_calls",
                format!("{expected:?}"),
                format!("{actual:?}"),
            ));
        }
    }
    if let Some(expected) = expect.callouts {
        let actual = host.callouts().len();
        if actual != expected {
            out.push(mismatch(
                "callouts",
                expected.to_string(),
                actual.to_string(),
            ));
        }
    }
    out
}
