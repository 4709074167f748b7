//! Snapshots: loading a long-lived aggregate without replaying all of it.
//!
//! A sensor's readings are its stream, `sensor-<id>`. Every `SNAPSHOT_EVERY`
//! events its state is also written to a companion stream,
//! `sensor-<id>-snapshots`, together with the revision it reflects. Loading
//! reads the latest snapshot (one event, read backwards) and then only the
//! events after its revision. Snapshots are a cache: the stream stays the
//! truth, and a missing snapshot stream just means a full replay.
//!
//! ```sh
//! STRATA_URL=http://127.0.0.1:2113 cargo run -p strata-client --example snapshots
//! ```

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_client::{Client, Error, EventData, ExpectedVersion, ReadOptions, TryStreamExt, Uuid};

/// A snapshot is written after every this many events.
const SNAPSHOT_EVERY: u64 = 500;

/// The payload of a `Measured` event.
#[derive(Serialize, Deserialize)]
struct Measured {
    millicelsius: i64,
}

/// The sensor's state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sensor {
    /// Readings seen.
    pub count: u64,
    /// Sum of all readings.
    pub sum: i64,
    /// Lowest reading.
    pub min: Option<i64>,
    /// Highest reading.
    pub max: Option<i64>,
}

impl Sensor {
    fn apply(&mut self, m: &Measured) {
        self.count += 1;
        self.sum += m.millicelsius;
        self.min = Some(self.min.map_or(m.millicelsius, |v| v.min(m.millicelsius)));
        self.max = Some(self.max.map_or(m.millicelsius, |v| v.max(m.millicelsius)));
    }
}

/// The payload of a `Snapshot` event.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    state: Sensor,
    /// Revision of the last event the state includes.
    revision: u64,
}

fn snapshot_stream(stream: &str) -> String {
    format!("{stream}-snapshots")
}

/// Appends `total` readings in batches of 100, snapshotting every
/// `SNAPSHOT_EVERY` events.
async fn record(client: &Client, stream: &str, total: u64) -> Result<(), Error> {
    let mut state = Sensor::default();
    let mut expected = ExpectedVersion::NoStream;
    let mut written = 0;
    while written < total {
        let n = (total - written).min(100);
        let readings: Vec<Measured> = (written..written + n)
            .map(|i| Measured {
                millicelsius: 20_000 + (i as i64 * 7919) % 5000 - 2500,
            })
            .collect();
        let events = readings
            .iter()
            .map(|m| EventData::json("Measured", m))
            .collect::<Result<Vec<_>, _>>()?;
        let result = client.append(stream, expected, events).await?;
        expected = result.next_expected_version();
        for m in &readings {
            state.apply(m);
        }
        let before = written;
        written += n;
        if written / SNAPSHOT_EVERY > before / SNAPSHOT_EVERY {
            let snapshot = Snapshot {
                state: state.clone(),
                revision: result.next_expected_revision,
            };
            let event = EventData::json("Snapshot", &snapshot)?;
            client
                .append(snapshot_stream(stream), ExpectedVersion::Any, [event])
                .await?;
        }
    }
    Ok(())
}

/// Folds the events of `stream` from `from_revision` into `state`; returns
/// how many were read.
async fn replay(
    client: &Client,
    stream: &str,
    from_revision: u64,
    state: &mut Sensor,
) -> Result<u64, Error> {
    let options = ReadOptions::forwards().from_revision(from_revision);
    let mut events = client.read_stream(stream, options).await?;
    let mut read = 0;
    while let Some(event) = events.try_next().await? {
        state.apply(&event.json()?);
        read += 1;
    }
    Ok(read)
}

/// Loads by replaying every event.
async fn load_full(client: &Client, stream: &str) -> Result<(Sensor, u64), Error> {
    let mut state = Sensor::default();
    let read = replay(client, stream, 0, &mut state).await?;
    Ok((state, read))
}

/// Loads from the latest snapshot plus the events after it.
async fn load_from_snapshot(client: &Client, stream: &str) -> Result<(Sensor, u64), Error> {
    let latest = ReadOptions::backwards().max_count(1);
    let snapshot = match client.read_stream(snapshot_stream(stream), latest).await {
        Ok(mut events) => match events.try_next().await? {
            Some(event) => Some(event.json::<Snapshot>()?),
            None => None,
        },
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let (mut state, from) = match snapshot {
        Some(s) => (s.state, s.revision + 1),
        None => (Sensor::default(), 0),
    };
    let read = replay(client, stream, from, &mut state).await?;
    Ok((state, read))
}

/// One way of loading, measured.
#[derive(Debug)]
pub struct Load {
    /// The state loaded.
    pub state: Sensor,
    /// Events of the sensor's stream read to get there.
    pub events_read: u64,
    /// Wall time it took.
    pub elapsed: Duration,
}

/// What the run did, for the caller to check.
#[derive(Debug)]
pub struct Report {
    /// Loading by full replay.
    pub full: Load,
    /// Loading from the latest snapshot.
    pub snapshot: Load,
}

/// Records 5 120 readings, then loads the sensor both ways.
pub async fn run(url: &str) -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::connect(url).await?;
    let stream = format!("sensor-{}", Uuid::new_v4());
    record(&client, &stream, 5_120).await?;

    let started = Instant::now();
    let (state, events_read) = load_full(&client, &stream).await?;
    let full = Load {
        state,
        events_read,
        elapsed: started.elapsed(),
    };
    let started = Instant::now();
    let (state, events_read) = load_from_snapshot(&client, &stream).await?;
    let snapshot = Load {
        state,
        events_read,
        elapsed: started.elapsed(),
    };

    println!(
        "{stream}: {} readings, mean {:.1} °C",
        full.state.count,
        full.state.sum as f64 / full.state.count.max(1) as f64 / 1000.0
    );
    println!(
        "full replay:        {:>5} events read in {:?}",
        full.events_read, full.elapsed
    );
    println!(
        "snapshot + events:  {:>5} events read in {:?}",
        snapshot.events_read, snapshot.elapsed
    );
    Ok(Report { full, snapshot })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("STRATA_URL").unwrap_or_else(|_| "http://127.0.0.1:2113".into());
    let report = run(&url).await?;
    if report.full.state != report.snapshot.state {
        return Err("the snapshot load disagrees with the full replay".into());
    }
    Ok(())
}
