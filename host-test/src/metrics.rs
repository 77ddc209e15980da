//! The metrics registry every VM of a host shares, like Envoy's stats store:
//! counters, gauges and histograms by name.

use std::collections::HashMap;

use crate::abi::types::{HostResult, MetricKind, Status};

/// One metric and its current value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metric {
    /// Name as the filter defined it.
    pub name: String,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Counter or gauge value.
    pub value: i64,
    /// Every value recorded into a histogram, in order.
    pub samples: Vec<u64>,
}

/// Metrics by id (index + 1) and by (kind, name).
#[derive(Debug, Default, Clone)]
pub struct MetricRegistry {
    metrics: Vec<Metric>,
    by_name: HashMap<(MetricKind, String), u32>,
}

impl MetricRegistry {
    /// Defines a metric or returns the id of the existing one with that
    /// kind and name (Envoy shares stats by name across VMs).
    ///
    /// # Errors
    /// `BadArgument` for an empty name.
    pub fn define(&mut self, kind: MetricKind, name: &str) -> HostResult<u32> {
        if name.is_empty() {
            return Err(Status::BadArgument);
        }
        if let Some(id) = self.by_name.get(&(kind, name.to_owned())) {
            return Ok(*id);
        }
        self.metrics.push(Metric {
            name: name.to_owned(),
            kind,
            value: 0,
            samples: Vec::new(),
        });
        let id = self.metrics.len() as u32;
        self.by_name.insert((kind, name.to_owned()), id);
        Ok(id)
    }

    fn slot(&mut self, id: u32) -> HostResult<&mut Metric> {
        let index = (id as usize).checked_sub(1).ok_or(Status::NotFound)?;
        self.metrics.get_mut(index).ok_or(Status::NotFound)
    }

    /// `proxy_increment_metric`.
    ///
    /// # Errors
    /// `NotFound` for an unknown id; `BadArgument` for a counter with
    /// `offset <= 0` or any histogram.
    pub fn increment(&mut self, id: u32, offset: i64) -> HostResult {
        let metric = self.slot(id)?;
        match metric.kind {
            MetricKind::Counter if offset > 0 => metric.value = metric.value.saturating_add(offset),
            MetricKind::Gauge => metric.value = metric.value.saturating_add(offset),
            _ => return Err(Status::BadArgument),
        }
        Ok(())
    }

    /// `proxy_record_metric`: adds to a counter, sets a gauge, records a
    /// histogram sample.
    ///
    /// # Errors
    /// `NotFound` for an unknown id.
    pub fn record(&mut self, id: u32, value: u64) -> HostResult {
        let metric = self.slot(id)?;
        let signed = i64::try_from(value).unwrap_or(i64::MAX);
        match metric.kind {
            MetricKind::Counter => metric.value = metric.value.saturating_add(signed),
            MetricKind::Gauge => metric.value = signed,
            MetricKind::Histogram => metric.samples.push(value),
        }
        Ok(())
    }

    /// `proxy_get_metric`.
    ///
    /// # Errors
    /// `NotFound` for an unknown id, `BadArgument` for a histogram.
    pub fn get(&mut self, id: u32) -> HostResult<u64> {
        let metric = self.slot(id)?;
        match metric.kind {
            MetricKind::Histogram => Err(Status::BadArgument),
            _ => Ok(metric.value as u64),
        }
    }

    /// Every metric, in definition order.
    pub fn all(&self) -> &[Metric] {
        &self.metrics
    }

    /// The metric with this name (of any kind).
    pub fn by_name(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_id_and_counter_increments_must_be_positive() {
        let mut registry = MetricRegistry::default();
        let id = registry.define(MetricKind::Counter, "c").unwrap();
        assert_eq!(registry.define(MetricKind::Counter, "c"), Ok(id));
        assert_eq!(registry.increment(id, 0), Err(Status::BadArgument));
        assert_eq!(registry.increment(id, -1), Err(Status::BadArgument));
        registry.increment(id, 2).unwrap();
        registry.record(id, 3).unwrap();
        assert_eq!(registry.get(id), Ok(5));
    }

    #[test]
    fn gauges_set_and_move_both_ways_histograms_cannot_be_read() {
        let mut registry = MetricRegistry::default();
        let gauge = registry.define(MetricKind::Gauge, "g").unwrap();
        registry.record(gauge, 7).unwrap();
        registry.increment(gauge, -2).unwrap();
        assert_eq!(registry.get(gauge), Ok(5));
        let histogram = registry.define(MetricKind::Histogram, "h").unwrap();
        registry.record(histogram, 42).unwrap();
        assert_eq!(registry.get(histogram), Err(Status::BadArgument));
        assert_eq!(registry.increment(histogram, 1), Err(Status::BadArgument));
        assert_eq!(registry.get(999), Err(Status::NotFound));
    }
}
