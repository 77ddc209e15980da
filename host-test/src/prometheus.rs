//! The Prometheus text exposition of a host's metrics, as Envoy's
//! `/stats/prometheus` renders Wasm metrics:
//!
//! - a Wasm metric's full stat name is `wasmcustom.<name>`;
//! - `stats_tags` regexes run (as a search) on the full name: capture group 1
//!   is cut from the name, group 2 (or 1) is the tag value; tags keep config
//!   order and the first extractor of a tag name that matches wins;
//! - the `wasmcustom.` namespace is stripped, no `envoy_` prefix is added,
//!   and characters outside `[a-zA-Z0-9_]` become `_`;
//! - counters, then gauges, then histograms; groups sorted by name, lines by
//!   full stat name; `# TYPE` per group and an empty line after it.
//!
//! Histograms are exact (`value <= le`, exact sum), where Envoy approximates
//! with circllhist bins; keep test samples off bucket bounds to agree.

use regex::Regex;
use serde::Deserialize;

use crate::abi::types::MetricKind;
use crate::metrics::Metric;

/// Envoy's default histogram buckets (`histogram_bucket_settings` unset).
pub const ENVOY_DEFAULT_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// One `stats_config.stats_tags` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsTag {
    /// Tag (label) name.
    pub tag_name: String,
    /// Regex in Envoy's convention (group 1 removed, group 2 the value).
    pub regex: String,
}

/// A string matcher as in Envoy's `StringMatcher` (the subset used here).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameMatch {
    /// Full-name equality.
    pub exact: Option<String>,
    /// Prefix.
    pub prefix: Option<String>,
    /// Suffix.
    pub suffix: Option<String>,
}

impl NameMatch {
    fn matches(&self, name: &str) -> bool {
        self.exact.as_ref().is_none_or(|e| name == e)
            && self
                .prefix
                .as_ref()
                .is_none_or(|p| name.starts_with(p.as_str()))
            && self
                .suffix
                .as_ref()
                .is_none_or(|s| name.ends_with(s.as_str()))
    }
}

/// One `stats_config.histogram_bucket_settings` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSetting {
    /// Which histograms (by full stat name).
    #[serde(rename = "match")]
    pub matcher: NameMatch,
    /// Upper bounds.
    pub buckets: Vec<f64>,
}

/// The parts of Envoy's bootstrap `stats_config` the exposition uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StatsConfig {
    /// Tag extractors.
    pub stats_tags: Vec<StatsTag>,
    /// Histogram buckets.
    pub histogram_bucket_settings: Vec<BucketSetting>,
    /// Envoy's default tag extractors: accepted, and irrelevant for Wasm
    /// metrics (none of them matches `wasmcustom.` names).
    pub use_all_default_tags: Option<bool>,
}

/// Why a stats config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StatsConfigError {
    /// A `stats_tags[i].regex` is not a valid regex.
    #[error("stats_tags[{index}].regex: {source}")]
    BadRegex {
        /// Position in `stats_tags`.
        index: usize,
        /// The regex error.
        source: regex::Error,
    },
}

struct Extractor {
    tag_name: String,
    regex: Regex,
}

/// A metric after tag extraction.
struct Series {
    name: String,
    full_name: String,
    tags: Vec<(String, String)>,
    metric: Metric,
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn extract(full_name: &str, extractors: &[Extractor]) -> (String, Vec<(String, String)>) {
    let mut removed: Vec<(usize, usize)> = Vec::new();
    let mut tags: Vec<(String, String)> = Vec::new();
    for extractor in extractors {
        if tags.iter().any(|(name, _)| *name == extractor.tag_name) {
            continue;
        }
        let Some(captures) = extractor.regex.captures(full_name) else {
            continue;
        };
        let Some(cut) = captures.get(1) else { continue };
        let value = captures.get(2).unwrap_or(cut).as_str().to_owned();
        removed.push((cut.start(), cut.end()));
        tags.push((extractor.tag_name.clone(), value));
    }
    let name: String = full_name
        .char_indices()
        .filter(|(at, _)| !removed.iter().any(|(start, end)| at >= start && at < end))
        .map(|(_, c)| c)
        .collect();
    (name, tags)
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

fn label_text(tags: &[(String, String)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", sanitize(k), escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

/// Renders `metrics` the way Envoy's `/stats/prometheus` would with `config`.
///
/// # Errors
/// [`StatsConfigError`] for an invalid regex.
pub fn render(metrics: &[Metric], config: &StatsConfig) -> Result<String, StatsConfigError> {
    let extractors = config
        .stats_tags
        .iter()
        .enumerate()
        .map(|(index, tag)| {
            Regex::new(&tag.regex)
                .map(|regex| Extractor {
                    tag_name: tag.tag_name.clone(),
                    regex,
                })
                .map_err(|source| StatsConfigError::BadRegex { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut series: Vec<Series> = metrics
        .iter()
        .map(|metric| {
            let full_name = format!("wasmcustom.{}", metric.name);
            let (extracted, tags) = extract(&full_name, &extractors);
            let bare = extracted.strip_prefix("wasmcustom.").unwrap_or(&extracted);
            Series {
                name: sanitize(bare),
                full_name,
                tags,
                metric: metric.clone(),
            }
        })
        .collect();
    let kind_rank = |kind: MetricKind| match kind {
        MetricKind::Counter => 0,
        MetricKind::Gauge => 1,
        MetricKind::Histogram => 2,
    };
    series.sort_by(|a, b| {
        (kind_rank(a.metric.kind), &a.name, &a.full_name).cmp(&(
            kind_rank(b.metric.kind),
            &b.name,
            &b.full_name,
        ))
    });
    let mut out = String::new();
    let mut current: Option<(MetricKind, String)> = None;
    for s in &series {
        let group = (s.metric.kind, s.name.clone());
        if current.as_ref() != Some(&group) {
            if current.is_some() {
                out.push('\n');
            }
            let type_name = match s.metric.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
                MetricKind::Histogram => "histogram",
            };
            out.push_str(&format!("# TYPE {} {type_name}\n", s.name));
            current = Some(group);
        }
        match s.metric.kind {
            MetricKind::Counter | MetricKind::Gauge => {
                out.push_str(&format!(
                    "{}{} {}\n",
                    s.name,
                    label_text(&s.tags, None),
                    s.metric.value
                ));
            }
            MetricKind::Histogram => {
                let buckets = config
                    .histogram_bucket_settings
                    .iter()
                    .find(|setting| setting.matcher.matches(&s.full_name))
                    .map_or(ENVOY_DEFAULT_BUCKETS, |setting| setting.buckets.as_slice());
                let samples = &s.metric.samples;
                for bound in buckets {
                    let count = samples.iter().filter(|&&v| (v as f64) <= *bound).count();
                    let le = format_number(*bound);
                    out.push_str(&format!(
                        "{}_bucket{} {count}\n",
                        s.name,
                        label_text(&s.tags, Some(("le", &le)))
                    ));
                }
                out.push_str(&format!(
                    "{}_bucket{} {}\n",
                    s.name,
                    label_text(&s.tags, Some(("le", "+Inf"))),
                    samples.len()
                ));
                let sum: u64 = samples.iter().copied().fold(0, u64::saturating_add);
                out.push_str(&format!(
                    "{}_sum{} {sum}\n",
                    s.name,
                    label_text(&s.tags, None)
                ));
                out.push_str(&format!(
                    "{}_count{} {}\n",
                    s.name,
                    label_text(&s.tags, None),
                    samples.len()
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(kind: MetricKind, name: &str, value: i64, samples: Vec<u64>) -> Metric {
        Metric {
            name: name.to_owned(),
            kind,
            value,
            samples,
        }
    }

    fn config() -> StatsConfig {
        let tag = |name: &str| StatsTag {
            tag_name: name.to_owned(),
            regex: format!(r"^wasmcustom\.(?:[^;]*;\.;)*?({name}=\.=([^;]*);\.;)"),
        };
        StatsConfig {
            stats_tags: vec![tag("method"), tag("code")],
            ..StatsConfig::default()
        }
    }

    #[test]
    fn labels_come_out_of_the_name_in_config_order() {
        let metrics = [metric(
            MetricKind::Counter,
            "method=.=GET;.;code=.=200;.;mesh_requests_total",
            3,
            vec![],
        )];
        let text = render(&metrics, &config()).unwrap();
        assert_eq!(text, "# TYPE mesh_requests_total counter\nmesh_requests_total{method=\"GET\",code=\"200\"} 3\n");
    }

    #[test]
    fn names_without_extractors_are_sanitized_with_no_envoy_prefix() {
        let metrics = [metric(
            MetricKind::Gauge,
            "security_headers.responses",
            2,
            vec![],
        )];
        let text = render(&metrics, &StatsConfig::default()).unwrap();
        assert_eq!(
            text,
            "# TYPE security_headers_responses gauge\nsecurity_headers_responses{} 2\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let config = StatsConfig {
            histogram_bucket_settings: vec![BucketSetting {
                matcher: NameMatch {
                    exact: None,
                    prefix: None,
                    suffix: Some("latency".into()),
                },
                buckets: vec![0.5, 10.0],
            }],
            ..StatsConfig::default()
        };
        let text = render(
            &[metric(MetricKind::Histogram, "latency", 0, vec![7, 12])],
            &config,
        )
        .unwrap();
        assert_eq!(
            text,
            "# TYPE latency histogram\nlatency_bucket{le=\"0.5\"} 0\nlatency_bucket{le=\"10\"} 1\n\
             latency_bucket{le=\"+Inf\"} 2\nlatency_sum{} 19\nlatency_count{} 2\n"
        );
    }

    #[test]
    fn a_bad_regex_names_its_index() {
        let config = StatsConfig {
            stats_tags: vec![StatsTag {
                tag_name: "x".into(),
                regex: "(".into(),
            }],
            ..StatsConfig::default()
        };
        let err = render(&[], &config).unwrap_err();
        assert!(err.to_string().starts_with("stats_tags[0].regex"));
    }
}
