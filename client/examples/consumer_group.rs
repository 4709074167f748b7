//! A consumer group: two consumers share the work of the stream `orders`.
//!
//! The group `billing` is created once; each consumer joins it and gets
//! some of the orders, one at a time per event, acknowledging each after
//! handling it. An order whose handling fails is nacked and comes back
//! (to either consumer) with its retry count; nothing is handled by both
//! at once, and when both are done every order was acknowledged once.
//!
//! ```sh
//! STRATA_URL=http://127.0.0.1:2113 cargo run -p strata-client --example consumer_group
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use strata_client::{
    Client, Error, EventData, ExpectedVersion, GroupSettings, GroupTarget, JoinOptions, NackAction,
    RecordedEvent, TryStreamExt, Uuid,
};

/// Orders appended.
const ORDERS: u64 = 100;

/// What happened to each order: who acknowledged it and after how many
/// earlier deliveries.
#[derive(Debug, Default)]
pub struct Report {
    /// Revision → (consumer, retries before the ack).
    pub acked: BTreeMap<u64, (String, u32)>,
}

/// The handler: every seventh order fails the first time.
fn handle(event: &RecordedEvent, retry_count: u32) -> bool {
    event.revision % 7 != 3 || retry_count > 0
}

async fn consume(
    client: Client,
    stream: String,
    name: &'static str,
) -> Result<Vec<(u64, String, u32)>, Error> {
    let options = JoinOptions {
        buffer_size: 10,
        consumer_name: name.into(),
    };
    let mut sub = client.join_group(GroupTarget::Stream(stream), "billing", options);
    let mut acked = Vec::new();
    // Until nothing comes for a while: the work is done.
    while let Ok(next) = tokio::time::timeout(Duration::from_millis(700), sub.try_next()).await {
        let Some(e) = next? else { break };
        if handle(&e.event, e.retry_count) {
            sub.ack([e.event.position]).await?;
            acked.push((e.event.revision, name.to_owned(), e.retry_count));
        } else {
            sub.nack(
                [e.event.position],
                NackAction::Retry,
                "payment service timed out",
            )
            .await?;
        }
    }
    Ok(acked)
}

/// Appends the orders, creates the group and runs two consumers to the end.
pub async fn run(url: &str) -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::connect(url).await?;
    let stream = format!("orders-{}", Uuid::new_v4());
    let orders = (0..ORDERS).map(|i| EventData::binary("Placed", i.to_string().into_bytes()));
    client
        .append(&stream, ExpectedVersion::NoStream, orders)
        .await?;
    client
        .create_group(
            GroupTarget::Stream(stream.clone()),
            "billing",
            GroupSettings::default(),
        )
        .await?;
    let a = tokio::spawn(consume(client.clone(), stream.clone(), "billing-1"));
    let b = tokio::spawn(consume(client.clone(), stream.clone(), "billing-2"));
    let mut report = Report::default();
    for (revision, who, retries) in a.await??.into_iter().chain(b.await??) {
        if report.acked.insert(revision, (who, retries)).is_some() {
            return Err(format!("order {revision} was acknowledged twice").into());
        }
    }
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("STRATA_URL").unwrap_or_else(|_| "http://127.0.0.1:2113".into());
    let report = run(&url).await?;
    let by = |who: &str| report.acked.values().filter(|(w, _)| w == who).count();
    println!(
        "{} orders acknowledged: {} by billing-1, {} by billing-2, {} after a retry",
        report.acked.len(),
        by("billing-1"),
        by("billing-2"),
        report.acked.values().filter(|(_, r)| *r > 0).count()
    );
    Ok(())
}
