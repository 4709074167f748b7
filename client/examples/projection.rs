//! A read model fed by a `$all` subscription, with a saved checkpoint.
//!
//! The projection keeps order totals per customer, built from the
//! `OrderPlaced` events of the `order-…` streams. It saves its state and
//! its checkpoint (the global position it has processed up to) together, in
//! one file replaced atomically, so after a crash or restart it subscribes
//! again with `SubscribeFrom::AfterPosition(checkpoint)`: whatever it had
//! processed after its last save is replayed onto the state of that save,
//! so no order is counted twice and none is skipped. Checkpoint messages
//! move the checkpoint on even while nothing matches the filter.
//!
//! ```sh
//! STRATA_URL=http://127.0.0.1:2113 cargo run -p strata-client --example projection
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_client::{
    Client, EventData, ExpectedVersion, Filter, ReadOptions, SubscribeFrom, SubscriptionMessage,
    TryStreamExt, Uuid,
};

/// The payload of an `OrderPlaced` event.
#[derive(Serialize, Deserialize)]
struct OrderPlaced {
    customer: String,
    amount: u64,
}

/// The read model and the position it reflects, saved as one document.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTotals {
    /// Sum of order amounts per customer.
    pub per_customer: BTreeMap<String, u64>,
    /// Number of orders counted.
    pub orders: u64,
    /// Every event up to this global position has been applied.
    pub checkpoint: Option<u64>,
}

impl OrderTotals {
    fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes a new file and renames it over the old one, so a crash leaves
    /// either the old or the new state, each with its own checkpoint. (To
    /// survive power loss too, fsync the file before the rename and the
    /// directory after it.)
    fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, path)
    }

    fn advance(&mut self, position: Option<u64>) {
        self.checkpoint = self.checkpoint.max(position);
    }
}

/// How a projection run ends.
enum Until {
    /// After applying this many events, without saving them: a crash.
    CrashAfter(u64),
    /// When the subscription has caught up with the log.
    CaughtUp,
}

/// Runs the projection from its saved state until `until`; saves every
/// `save_every` events, on checkpoints and when caught up.
async fn project(
    client: &Client,
    prefix: &str,
    path: &Path,
    until: Until,
) -> Result<OrderTotals, Box<dyn std::error::Error + Send + Sync>> {
    const SAVE_EVERY: u64 = 25;
    let mut state = OrderTotals::load(path)?;
    let from = state
        .checkpoint
        .map_or(SubscribeFrom::Start, SubscribeFrom::AfterPosition);
    println!(
        "projection starts {from:?} with {} orders counted",
        state.orders
    );
    let filter = Filter::new()
        .stream_prefix(prefix)
        .event_type_prefix("OrderPlaced");
    let mut subscription = client.subscribe_to_all(from, filter);
    let mut applied = 0;
    while let Some(message) = subscription.try_next().await? {
        match &message {
            SubscriptionMessage::Event(event) => {
                let order: OrderPlaced = event.json()?;
                *state.per_customer.entry(order.customer).or_default() += order.amount;
                state.orders += 1;
                state.advance(message.resume_position());
                applied += 1;
                if matches!(until, Until::CrashAfter(n) if applied == n) {
                    println!(
                        "projection crashes after {applied} events, unsaved since its last save"
                    );
                    return Ok(state);
                }
                if applied % SAVE_EVERY == 0 {
                    state.save(path)?;
                }
            }
            SubscriptionMessage::Checkpoint { .. } => {
                state.advance(message.resume_position());
                state.save(path)?;
            }
            SubscriptionMessage::CaughtUp { .. } => {
                state.advance(message.resume_position());
                state.save(path)?;
                if let Until::CaughtUp = until {
                    println!("projection caught up after applying {applied} events");
                    return Ok(state);
                }
            }
            _ => {}
        }
    }
    Err("the subscription ended".into())
}

async fn place_orders(
    client: &Client,
    prefix: &str,
    range: std::ops::Range<u64>,
) -> Result<(), strata_client::Error> {
    for i in range {
        let order = OrderPlaced {
            customer: format!("customer-{}", i % 7),
            amount: 10 + i % 13,
        };
        let events = [
            EventData::json("OrderPlaced", &order)?,
            EventData::json("OrderShipped", &serde_json::json!({}))?,
        ];
        client
            .append(format!("{prefix}{i}"), ExpectedVersion::NoStream, events)
            .await?;
    }
    Ok(())
}

/// The totals computed straight from the log, to compare with.
async fn totals_from_the_log(
    client: &Client,
    prefix: &str,
) -> Result<OrderTotals, Box<dyn std::error::Error + Send + Sync>> {
    let filter = Filter::new()
        .stream_prefix(prefix)
        .event_type_prefix("OrderPlaced");
    let mut events = client.read_all(ReadOptions::forwards(), filter).await?;
    let mut totals = OrderTotals::default();
    while let Some(event) = events.try_next().await? {
        let order: OrderPlaced = event.json()?;
        *totals.per_customer.entry(order.customer).or_default() += order.amount;
        totals.orders += 1;
    }
    Ok(totals)
}

/// What the run did, for the caller to check.
#[derive(Debug)]
pub struct Report {
    /// The projection's state after its restart.
    pub projected: OrderTotals,
    /// The same totals, read from the log.
    pub expected: OrderTotals,
}

/// Places 100 orders, runs the projection until it "crashes" after 60,
/// places 50 more, restarts it from its saved checkpoint, and compares its
/// totals with the log's.
pub async fn run(url: &str) -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::connect(url).await?;
    let run_id = Uuid::new_v4();
    let prefix = format!("order-{run_id}-");
    let path: PathBuf = std::env::temp_dir().join(format!("strata-projection-{run_id}.json"));

    place_orders(&client, &prefix, 0..100).await?;
    project(&client, &prefix, &path, Until::CrashAfter(60)).await?;
    let saved = OrderTotals::load(&path)?;
    println!(
        "saved state: {} orders, checkpoint {:?}",
        saved.orders, saved.checkpoint
    );

    place_orders(&client, &prefix, 100..150).await?;
    let projected = project(&client, &prefix, &path, Until::CaughtUp).await?;
    std::fs::remove_file(&path)?;

    let mut expected = totals_from_the_log(&client, &prefix).await?;
    expected.checkpoint = projected.checkpoint;
    println!(
        "after the restart: {} orders for {} customers (the log has {})",
        projected.orders,
        projected.per_customer.len(),
        expected.orders
    );
    Ok(Report {
        projected,
        expected,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("STRATA_URL").unwrap_or_else(|_| "http://127.0.0.1:2113".into());
    let report = run(&url).await?;
    if report.projected != report.expected {
        return Err("the projection disagrees with the log".into());
    }
    Ok(())
}
