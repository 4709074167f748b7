//! Strata's Prometheus `/metrics`, scraped just before and just after a
//! measured window: the deltas of its group-commit and append histograms
//! give the mean batch size, the mean fdatasync time per batch and the
//! server-side append latency over the window.
//!
//! The HTTP client is the least that reads Strata's own endpoint: one
//! `GET` over a fresh loopback connection, `Connection: close`, the body
//! read to the end.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::error::{BenchError, Result};

/// Appends per group-commit batch.
const BATCH_APPENDS: &str = "strata_batch_appends";
/// Events per group-commit batch.
const BATCH_EVENTS: &str = "strata_batch_events";
/// fdatasync time per batch, seconds.
const FSYNC: &str = "strata_fsync_seconds";
/// Append latency as the service sees it (validation to answer), seconds:
/// every `Append`, every `MultiAppend`, every append of a `PipelinedAppend`.
const APPEND: &str = "strata_append_seconds";

/// A scrape must answer within this, or the cell notes it and goes on.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A Prometheus histogram: observation count, sum, cumulative buckets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Number of observations.
    pub count: f64,
    /// Sum of the observations.
    pub sum: f64,
    /// `(upper bound, cumulative count)`, by increasing bound; `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The observations made after `before` was taken (`self` − `before`).
    pub fn since(&self, before: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, n)| {
                let was = before
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == le)
                    .map_or(0.0, |(_, n)| *n);
                (le, (n - was).max(0.0))
            })
            .collect();
        Histogram {
            count: (self.count - before.count).max(0.0),
            sum: (self.sum - before.sum).max(0.0),
            buckets,
        }
    }

    /// The mean observation, if there is any.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q`-quantile estimated as Prometheus' `histogram_quantile` does:
    /// linear inside the bucket that holds the rank, from the previous
    /// bound (0 for the first bucket); the highest finite bound when the
    /// rank falls in `+Inf`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 || self.buckets.is_empty() {
            return None;
        }
        let rank = q * self.count;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = n - below;
                let frac = if inside > 0.0 {
                    (rank - below) / inside
                } else {
                    1.0
                };
                return Some(lower + (le - lower) * frac);
            }
            (lower, below) = (le, n);
        }
        Some(lower)
    }
}

/// The histograms of one scrape, by metric name.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    histograms: BTreeMap<String, Histogram>,
}

impl Scrape {
    /// Parses the text exposition format; keeps histograms only (every
    /// `NAME_bucket{le=…}`, `NAME_sum` and `NAME_count` line).
    pub fn parse(text: &str) -> Scrape {
        let mut histograms: BTreeMap<String, Histogram> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            if let Some(base) = name.strip_suffix("_bucket") {
                if let Some(le) = label(labels, "le").and_then(parse_bound) {
                    let h = histograms.entry(base.to_owned()).or_default();
                    h.buckets.push((le, value));
                }
            } else if let Some(base) = name.strip_suffix("_sum") {
                histograms.entry(base.to_owned()).or_default().sum = value;
            } else if let Some(base) = name.strip_suffix("_count") {
                histograms.entry(base.to_owned()).or_default().count = value;
            }
        }
        for h in histograms.values_mut() {
            h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Scrape { histograms }
    }

    /// The histogram called `name`, empty if the scrape had none.
    pub fn histogram(&self, name: &str) -> Histogram {
        self.histograms.get(name).cloned().unwrap_or_default()
    }
}

/// The value of label `key` in `a="x",b="y"`.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// A bucket bound: a number or `+Inf`.
fn parse_bound(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

/// What Strata's metrics say about one window. Every figure is absent when
/// the window held nothing it could be computed from (e.g. no batch
/// committed during a read workload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ServerMetrics {
    /// Group-commit batches committed.
    pub batches: u64,
    /// Mean appends per batch (the server counts a multi-append as its
    /// per-stream appends).
    pub appends_per_batch: Option<f64>,
    /// Mean events per batch.
    pub events_per_batch: Option<f64>,
    /// Mean fdatasync time per batch, ms.
    pub fsync_ms: Option<f64>,
    /// Appends answered by the service: one per `Append`, per `MultiAppend`
    /// call, per pipelined append.
    pub appends: u64,
    /// Mean service-side append latency, ms.
    pub append_ms: Option<f64>,
    /// Median service-side append latency, ms, estimated from the buckets.
    pub append_p50_ms: Option<f64>,
    /// 99th percentile of the same, estimated from the buckets.
    pub append_p99_ms: Option<f64>,
}

impl ServerMetrics {
    /// The deltas between two scrapes.
    pub fn between(before: &Scrape, after: &Scrape) -> ServerMetrics {
        let d = |name: &str| after.histogram(name).since(&before.histogram(name));
        let (appends_h, events_h, fsync_h, append_h) =
            (d(BATCH_APPENDS), d(BATCH_EVENTS), d(FSYNC), d(APPEND));
        let ms = |v: Option<f64>| v.map(|s| s * 1e3);
        ServerMetrics {
            batches: appends_h.count.round() as u64,
            appends_per_batch: appends_h.mean(),
            events_per_batch: events_h.mean(),
            fsync_ms: ms(fsync_h.mean()),
            appends: append_h.count.round() as u64,
            append_ms: ms(append_h.mean()),
            append_p50_ms: ms(append_h.quantile(0.50)),
            append_p99_ms: ms(append_h.quantile(0.99)),
        }
    }
}

/// Fetches and parses `url` (`http://HOST:PORT/PATH`).
pub async fn fetch(url: &str) -> Result<Scrape> {
    let fail = |m: String| BenchError::server("strata", format!("metrics {url}: {m}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("only http:// is supported".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let exchange = async {
        let mut sock = tokio::net::TcpStream::connect(authority).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        sock.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        sock.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {TIMEOUT:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("not an HTTP response".into()))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(fail(format!("answered `{status}`")));
    }
    Ok(Scrape::parse(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP strata_batch_appends Appends per group-commit batch
# TYPE strata_batch_appends histogram
strata_batch_appends_bucket{le="1"} 2
strata_batch_appends_bucket{le="2"} 2
strata_batch_appends_bucket{le="4"} 2
strata_batch_appends_bucket{le="+Inf"} 2
strata_batch_appends_sum 2
strata_batch_appends_count 2
strata_append_seconds_bucket{le="0.001"} 0
strata_append_seconds_bucket{le="0.002"} 0
strata_append_seconds_bucket{le="+Inf"} 0
strata_append_seconds_sum 0
strata_append_seconds_count 0
strata_appends_total 2
"#;

    const AFTER: &str = r#"strata_batch_appends_bucket{le="1"} 2
strata_batch_appends_bucket{le="2"} 4
strata_batch_appends_bucket{le="4"} 6
strata_batch_appends_bucket{le="+Inf"} 6
strata_batch_appends_sum 14
strata_batch_appends_count 6
strata_append_seconds_bucket{le="0.001"} 50
strata_append_seconds_bucket{le="0.002"} 100
strata_append_seconds_bucket{le="+Inf"} 100
strata_append_seconds_sum 0.1
strata_append_seconds_count 100
"#;

    #[test]
    fn deltas_and_quantiles() {
        let m = ServerMetrics::between(&Scrape::parse(BEFORE), &Scrape::parse(AFTER));
        assert_eq!(m.batches, 4);
        assert_eq!(m.appends_per_batch, Some(3.0)); // (14 - 2) / (6 - 2)
        assert_eq!(m.events_per_batch, None); // not exported here
        assert_eq!(m.appends, 100);
        let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-9);
        assert!(near(m.append_ms, 1.0), "{m:?}");
        // Rank 50 is the top of the first bucket; rank 99 is 98% into the second.
        assert!(near(m.append_p50_ms, 1.0), "{m:?}");
        assert!(near(m.append_p99_ms, 1.98), "{m:?}");
    }

    #[test]
    fn a_rank_in_the_inf_bucket_is_the_highest_bound() {
        let h = Histogram {
            count: 10.0,
            sum: 100.0,
            buckets: vec![(1.0, 5.0), (2.0, 5.0), (f64::INFINITY, 10.0)],
        };
        assert_eq!(h.quantile(0.99), Some(2.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
