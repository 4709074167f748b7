//! KurrentDB's `$all` filters as the store's [`Filter`]. Prefixes (of
//! stream names or of event types) are the store's prefix lists; a regular
//! expression is a [`Pattern`] (`crate::pattern`: fancy-regex, bounded),
//! compiled once per call. An invalid one is INVALID_ARGUMENT with the
//! regex error; one that overruns its limits on some name ends the call
//! INVALID_ARGUMENT: a read with its next batch (or at its end), a
//! subscription with the store's next message (a checkpoint at the latest).

use strata_proto::kurrentdb::streams::read_req::options::{self as opts, filter_options};
use tonic::Status;

use crate::auth::Caller;
pub(super) use crate::pattern::Overrun;
use crate::pattern::{Pattern, BACKTRACK_LIMIT};
use crate::store::Filter;

/// A call's filter, as the store takes it.
#[derive(Default)]
pub(super) struct CallFilter {
    /// What the store applies.
    pub(super) filter: Filter,
    /// For a regular expression: set once a match overran its limits.
    pub(super) overrun: Option<Overrun>,
}

/// The call's failure, once a match of its expression overran.
pub(super) fn failure(overrun: &Overrun) -> Option<Status> {
    overrun.reason().map(|why| {
        Status::invalid_argument(format!(
            "the filter's regular expression is too costly to match ({why}; at most \
             {BACKTRACK_LIMIT} backtracking steps per name)"
        ))
    })
}

/// A KurrentDB filter expression: prefixes, or a pattern when its `regex`
/// is not empty (a non-empty `regex` wins over `prefix`, as in KurrentDB).
pub(super) enum Expression {
    /// Prefixes of stream names (`true`) or of event types.
    Prefixes(bool, Vec<String>),
    /// A regular expression.
    Pattern(Pattern),
}

impl Expression {
    /// The expression of a filter's wire parts.
    pub(super) fn new(on_streams: bool, regex: String, prefix: Vec<String>) -> Self {
        if regex.is_empty() {
            Expression::Prefixes(on_streams, prefix)
        } else {
            Expression::Pattern(Pattern {
                on_streams,
                source: regex,
            })
        }
    }

    /// The store's filter of it, compiled.
    pub(super) fn compile(self) -> Result<CallFilter, Status> {
        match self {
            Expression::Prefixes(true, p) => Ok(CallFilter {
                filter: Filter {
                    stream_prefixes: p,
                    ..Filter::default()
                },
                overrun: None,
            }),
            Expression::Prefixes(false, p) => Ok(CallFilter {
                filter: Filter {
                    event_type_prefixes: p,
                    ..Filter::default()
                },
                overrun: None,
            }),
            Expression::Pattern(p) => {
                let (filter, overrun) = p.filter().map_err(Status::invalid_argument)?;
                Ok(CallFilter {
                    filter,
                    overrun: Some(overrun),
                })
            }
        }
    }
}

/// A KurrentDB read or subscription filter from the wire.
pub(super) fn from_wire(f: opts::FilterOptions) -> Result<CallFilter, Status> {
    match f.filter {
        Some(filter_options::Filter::StreamIdentifier(e)) => {
            Expression::new(true, e.regex, e.prefix)
        }
        Some(filter_options::Filter::EventType(e)) => Expression::new(false, e.regex, e.prefix),
        None => return Err(Status::invalid_argument("a filter needs an expression")),
    }
    .compile()
}

/// `filter` for `caller`: the streams it may not read are skipped, before
/// the filter's own predicate is asked.
pub(super) fn gated(mut filter: Filter, caller: &Caller) -> Filter {
    filter.gate = match (caller.read_gate(), filter.gate.take()) {
        (Some(access), Some(own)) => Some(access.and(own)),
        (access, own) => access.or(own),
    };
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex_filter(regex: &str, on_streams: bool) -> CallFilter {
        let e = filter_options::Expression {
            regex: regex.to_owned(),
            prefix: Vec::new(),
        };
        let filter = Some(if on_streams {
            filter_options::Filter::StreamIdentifier(e)
        } else {
            filter_options::Filter::EventType(e)
        });
        from_wire(opts::FilterOptions {
            filter,
            ..Default::default()
        })
        .expect("valid filter")
    }

    fn admits(f: &CallFilter, stream: &str, event_type: &str) -> bool {
        f.filter.matches(stream, event_type)
            && f.filter
                .gate
                .as_ref()
                .is_none_or(|g| g.admits_event(stream, event_type))
    }

    #[test]
    fn the_python_clients_default_exclusion_keeps_user_events() {
        let f = regex_filter(r"^(?!(\$.+$|PersistentConfig\d+$))", false);
        assert!(admits(&f, "order-1", "Placed"));
        assert!(admits(&f, "order-1", "PersistentConfigured"));
        assert!(!admits(&f, "order-1", "$metadata"));
        assert!(!admits(&f, "order-1", "PersistentConfig1"));
        assert!(!admits(&f, "$system", "Placed"), "$-streams stay out");
    }

    #[test]
    fn a_stream_expression_sees_dollar_streams() {
        let f = regex_filter(r"^\$", true);
        assert!(admits(&f, "$system", "T"));
        assert!(!admits(&f, "order-1", "T"));
        let f = regex_filter(r"^[^\$].*", true);
        assert!(!admits(&f, "$system", "T"));
        assert!(admits(&f, "order-1", "T"));
    }

    #[test]
    fn bad_and_long_patterns_are_invalid_arguments() {
        for pattern in ["(?<=a+)b".to_owned(), "[".to_owned(), "a".repeat(1025)] {
            let e = filter_options::Expression {
                regex: pattern,
                prefix: Vec::new(),
            };
            let Err(status) = from_wire(opts::FilterOptions {
                filter: Some(filter_options::Filter::EventType(e)),
                ..Default::default()
            }) else {
                panic!("accepted");
            };
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn a_costly_match_fails_the_call_and_stops_matching() {
        let f = regex_filter(r"^(?=a)(a|aa)*\1$", false);
        let overrun = f.overrun.as_ref().expect("a regex filter");
        assert!(failure(overrun).is_none());
        let hostile = format!("{}!", "a".repeat(40));
        assert!(!admits(&f, "s", &hostile));
        let status = failure(overrun).expect("overran");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(!admits(&f, "s", "aa"), "nothing matches after an overrun");
    }
}
