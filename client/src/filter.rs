//! [`Filter`]: which events of `$all` a read or subscription delivers.

use strata_proto::v1;

/// Restricts a `$all` read or subscription to matching events. An event
/// matches when it matches at least one prefix of every non-empty list; the
/// default, empty filter matches everything. Prefixes compare byte-wise and
/// case-sensitively.
///
/// ```
/// use strata_client::Filter;
///
/// // Events of streams "order-…" or "invoice-…" whose type starts with "Paid":
/// let filter = Filter::new()
///     .stream_prefix("order-")
///     .stream_prefix("invoice-")
///     .event_type_prefix("Paid");
/// assert!(!filter.is_empty());
/// assert!(Filter::default().is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    stream_prefixes: Vec<String>,
    event_type_prefixes: Vec<String>,
}

impl Filter {
    /// A filter that matches every event; narrow it with the builder methods.
    ///
    /// ```
    /// assert!(strata_client::Filter::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a stream-name prefix to match.
    ///
    /// ```
    /// let f = strata_client::Filter::new().stream_prefix("account-");
    /// assert_eq!(f.stream_prefixes(), ["account-"]);
    /// ```
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefixes.push(prefix.into());
        self
    }

    /// Adds an event-type prefix to match.
    ///
    /// ```
    /// let f = strata_client::Filter::new().event_type_prefix("Order");
    /// assert_eq!(f.event_type_prefixes(), ["Order"]);
    /// ```
    pub fn event_type_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.event_type_prefixes.push(prefix.into());
        self
    }

    /// The stream-name prefixes.
    ///
    /// ```
    /// assert!(strata_client::Filter::new().stream_prefixes().is_empty());
    /// ```
    pub fn stream_prefixes(&self) -> &[String] {
        &self.stream_prefixes
    }

    /// The event-type prefixes.
    ///
    /// ```
    /// assert!(strata_client::Filter::new().event_type_prefixes().is_empty());
    /// ```
    pub fn event_type_prefixes(&self) -> &[String] {
        &self.event_type_prefixes
    }

    /// Whether the filter matches everything.
    ///
    /// ```
    /// assert!(!strata_client::Filter::new().stream_prefix("a").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.stream_prefixes.is_empty() && self.event_type_prefixes.is_empty()
    }

    pub(crate) fn from_wire(f: Option<v1::Filter>) -> Self {
        let f = f.unwrap_or_default();
        Filter {
            stream_prefixes: f.stream_prefix,
            event_type_prefixes: f.event_type_prefix,
        }
    }

    pub(crate) fn to_wire(&self) -> Option<v1::Filter> {
        (!self.is_empty()).then(|| v1::Filter {
            stream_prefix: self.stream_prefixes.clone(),
            event_type_prefix: self.event_type_prefixes.clone(),
        })
    }
}
