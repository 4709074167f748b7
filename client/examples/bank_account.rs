//! A bank account as an event-sourced aggregate.
//!
//! The account is its stream, `account-<id>`: `Opened`, `Deposited` and
//! `Withdrawn` events. Its balance is never stored, only computed by
//! replaying the stream. A withdrawal is refused when it would overdraw the
//! account, and every command runs the optimistic-concurrency loop: load
//! the account, decide, append with `ExpectedVersion::Exact(last revision)`,
//! and on a conflict (someone else appended in between) load again and
//! decide again. Eight tellers withdrawing concurrently never overdraw it.
//!
//! Run against a server (`cargo run -p strata-server` in another shell):
//!
//! ```sh
//! STRATA_URL=http://127.0.0.1:2113 cargo run -p strata-client --example bank_account
//! ```

use serde::{Deserialize, Serialize};
use strata_client::{
    Client, Error, EventData, ExpectedVersion, ReadOptions, RecordedEvent, TryStreamExt, Uuid,
};

/// What can happen to an account.
#[derive(Debug, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl AccountEvent {
    /// The event type is the variant's name; the payload is its fields.
    fn to_event_data(&self) -> Result<EventData, Error> {
        let (event_type, data) = match self {
            AccountEvent::Opened { owner } => ("Opened", serde_json::json!({ "owner": owner })),
            AccountEvent::Deposited { amount } => {
                ("Deposited", serde_json::json!({ "amount": amount }))
            }
            AccountEvent::Withdrawn { amount } => {
                ("Withdrawn", serde_json::json!({ "amount": amount }))
            }
        };
        EventData::json(event_type, &data)
    }

    fn from_recorded(e: &RecordedEvent) -> Result<Self, Error> {
        #[derive(Deserialize)]
        struct Owner {
            owner: String,
        }
        #[derive(Deserialize)]
        struct Amount {
            amount: u64,
        }
        Ok(match e.event_type.as_str() {
            "Opened" => AccountEvent::Opened {
                owner: e.json::<Owner>()?.owner,
            },
            "Deposited" => AccountEvent::Deposited {
                amount: e.json::<Amount>()?.amount,
            },
            "Withdrawn" => AccountEvent::Withdrawn {
                amount: e.json::<Amount>()?.amount,
            },
            other => {
                return Err(Error::Protocol {
                    message: format!("unknown account event {other}"),
                })
            }
        })
    }
}

/// The account's state: a fold over its events.
#[derive(Debug, Default)]
struct Account {
    owner: Option<String>,
    balance: u64,
    /// Revision of the last event applied; `None` for a stream that does not exist.
    revision: Option<u64>,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("account is not open")]
    NotOpen,
    #[error("account is already open")]
    AlreadyOpen,
    #[error("withdrawing {amount} would overdraw the balance of {balance}")]
    Overdraft { balance: u64, amount: u64 },
    #[error(transparent)]
    Store(#[from] Error),
}

/// Replays the account's stream.
async fn load(client: &Client, stream: &str) -> Result<Account, Error> {
    let mut account = Account::default();
    let mut events = match client.read_stream(stream, ReadOptions::forwards()).await {
        Ok(events) => events,
        Err(Error::NotFound { .. }) => return Ok(account),
        Err(e) => return Err(e),
    };
    while let Some(recorded) = events.try_next().await? {
        account.apply(&AccountEvent::from_recorded(&recorded)?);
        account.revision = Some(recorded.revision);
    }
    Ok(account)
}

/// The optimistic-concurrency loop: load, decide, append at exactly the
/// revision that was loaded; on a conflict start over. Returns how many
/// conflicts were retried.
async fn execute(
    client: &Client,
    stream: &str,
    decide: impl Fn(&Account) -> Result<Vec<AccountEvent>, CommandError>,
) -> Result<u32, CommandError> {
    let mut conflicts = 0;
    loop {
        let account = load(client, stream).await?;
        let events = decide(&account)?
            .iter()
            .map(AccountEvent::to_event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let expected = ExpectedVersion::from_revision(account.revision);
        match client.append(stream, expected, events).await {
            Ok(_) => return Ok(conflicts),
            Err(Error::WrongExpectedVersion { .. }) => conflicts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn open(client: &Client, stream: &str, owner: &str) -> Result<u32, CommandError> {
    execute(client, stream, |account| match account.revision {
        Some(_) => Err(CommandError::AlreadyOpen),
        None => Ok(vec![AccountEvent::Opened {
            owner: owner.to_owned(),
        }]),
    })
    .await
}

async fn deposit(client: &Client, stream: &str, amount: u64) -> Result<u32, CommandError> {
    execute(client, stream, |account| match account.owner {
        None => Err(CommandError::NotOpen),
        Some(_) => Ok(vec![AccountEvent::Deposited { amount }]),
    })
    .await
}

async fn withdraw(client: &Client, stream: &str, amount: u64) -> Result<u32, CommandError> {
    execute(client, stream, |account| {
        if account.owner.is_none() {
            return Err(CommandError::NotOpen);
        }
        if account.balance < amount {
            return Err(CommandError::Overdraft {
                balance: account.balance,
                amount,
            });
        }
        Ok(vec![AccountEvent::Withdrawn { amount }])
    })
    .await
}

/// What the run did, for the caller to check.
#[derive(Debug)]
pub struct Report {
    /// The balance computed by replaying the stream at the end.
    pub balance: u64,
    /// Withdrawals that went through.
    pub withdrawals: u32,
    /// Withdrawals refused because they would overdraw the account.
    pub refused: u32,
    /// Appends that hit a conflict and were decided again.
    pub conflicts_retried: u32,
}

/// Opens an account, deposits 300, then lets 8 tellers try to withdraw 10
/// five times each (400 in all) at the same time.
pub async fn run(url: &str) -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::connect(url).await?;
    let stream = format!("account-{}", Uuid::new_v4());

    open(&client, &stream, "Ann").await?;
    match open(&client, &stream, "Bob").await {
        Err(CommandError::AlreadyOpen) => println!("opening {stream} twice is refused"),
        other => return Err(format!("second open: {other:?}").into()),
    }
    deposit(&client, &stream, 300).await?;
    println!("{stream}: opened for Ann, deposited 300");

    let tellers: Vec<_> = (0..8)
        .map(|_| {
            let (client, stream) = (client.clone(), stream.clone());
            tokio::spawn(async move {
                let (mut done, mut refused, mut conflicts) = (0, 0, 0);
                for _ in 0..5 {
                    match withdraw(&client, &stream, 10).await {
                        Ok(c) => (done, conflicts) = (done + 1, conflicts + c),
                        Err(CommandError::Overdraft { .. }) => refused += 1,
                        Err(e) => return Err(e),
                    }
                }
                Ok((done, refused, conflicts))
            })
        })
        .collect();
    let (mut withdrawals, mut refused, mut conflicts_retried) = (0, 0, 0);
    for teller in tellers {
        let (done, no, conflicts) = teller.await??;
        withdrawals += done;
        refused += no;
        conflicts_retried += conflicts;
    }

    let account = load(&client, &stream).await?;
    println!(
        "8 tellers: {withdrawals} withdrawals of 10, {refused} refused (overdraft), \
         {conflicts_retried} conflicts retried; balance by replay: {}",
        account.balance
    );
    Ok(Report {
        balance: account.balance,
        withdrawals,
        refused,
        conflicts_retried,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("STRATA_URL").unwrap_or_else(|_| "http://127.0.0.1:2113".into());
    run(&url).await?;
    Ok(())
}
