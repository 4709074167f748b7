//! KurrentDB's `$all` filters as the store's [`Filter`]. Prefixes (of
//! stream names or of event types) are the store's prefix lists. A regular
//! expression becomes the event predicate of the filter's gate, compiled
//! once per call with fancy-regex, which has the look-arounds the official
//! clients send (e.g. `^(?!(\$.+$|PersistentConfig\d+$))` on event types,
//! the Python client's default, or `^[^\$].*`). It matches anywhere in the
//! name, as KurrentDB's `IsMatch` does; a stream-name expression also sees
//! `$`-streams, which pass when it matches them.
//!
//! A pattern is at most [`MAX_PATTERN_BYTES`] long and its compiled form
//! bounded; an invalid one is INVALID_ARGUMENT with the regex error. One
//! match may backtrack at most [`BACKTRACK_LIMIT`] times: a match that
//! needs more marks the call's [`Overrun`], and from then on the
//! predicate admits nothing without running: a hostile pattern costs the
//! server at most one limit's work per event it scans, and an overrun only
//! once. The call then ends INVALID_ARGUMENT:
//! a read with its next batch (or at its end), a subscription with the
//! store's next message (a checkpoint at the latest).
//!
//! This module only builds predicates: the store evaluates them and knows
//! nothing of regular expressions.

use std::sync::{Arc, OnceLock};

use fancy_regex::{Regex, RegexBuilder};
use strata_proto::kurrentdb::streams::read_req::options::{self as opts, filter_options};
use tonic::Status;

use crate::auth::Caller;
use crate::store::{Filter, StreamGate};

/// The longest pattern accepted, in bytes.
pub(super) const MAX_PATTERN_BYTES: usize = 1024;

/// How many times one match may backtrack (fancy-regex's default is a
/// million; names are short, so a benign pattern stays far below this).
pub(super) const BACKTRACK_LIMIT: usize = 100_000;

/// The approximate size limit of a pattern's compiled automata, in bytes.
const COMPILED_BYTES: usize = 1 << 20;

/// The largest backtracking program of a pattern, in instructions.
const PROGRAM_INSTRUCTIONS: usize = 10_000;

/// A call's filter, as the store takes it.
#[derive(Default)]
pub(super) struct CallFilter {
    /// What the store applies.
    pub(super) filter: Filter,
    /// For a regular expression: set once a match overran its limits.
    pub(super) overrun: Option<Overrun>,
}

/// Whether a call's regular expression overran its limits on some name,
/// and how (the fancy-regex runtime error). Written by the store's read
/// paths through the predicate, read by the call's task between batches.
#[derive(Clone, Default)]
pub(super) struct Overrun(Arc<OnceLock<String>>);

impl Overrun {
    /// The call's failure, once a match overran.
    pub(super) fn failure(&self) -> Option<Status> {
        // The name it overran on is left out of the message: only the
        // pattern is the caller's.
        self.0.get().map(|why| {
            Status::invalid_argument(format!(
                "the filter's regular expression is too costly to match ({why}; at most \
                 {BACKTRACK_LIMIT} backtracking steps per name)"
            ))
        })
    }

    fn is_set(&self) -> bool {
        self.0.get().is_some()
    }

    fn set(&self, why: String) {
        let _ = self.0.set(why);
    }
}

/// A KurrentDB filter from the wire. A non-empty `regex` wins over
/// `prefix`, as in KurrentDB.
pub(super) fn from_wire(f: opts::FilterOptions) -> Result<CallFilter, Status> {
    let (e, on_streams) = match f.filter {
        Some(filter_options::Filter::StreamIdentifier(e)) => (e, true),
        Some(filter_options::Filter::EventType(e)) => (e, false),
        None => return Err(Status::invalid_argument("a filter needs an expression")),
    };
    if e.regex.is_empty() {
        let filter = if on_streams {
            Filter {
                stream_prefixes: e.prefix,
                ..Filter::default()
            }
        } else {
            Filter {
                event_type_prefixes: e.prefix,
                ..Filter::default()
            }
        };
        return Ok(CallFilter {
            filter,
            overrun: None,
        });
    }
    let regex = compile(&e.regex)?;
    let overrun = Overrun::default();
    let seen = overrun.clone();
    let gate = StreamGate::events(move |stream, event_type| {
        if seen.is_set() {
            return false;
        }
        let name = if on_streams { stream } else { event_type };
        regex.is_match(name).unwrap_or_else(|e| {
            seen.set(e.to_string());
            false
        })
    });
    let filter = Filter {
        // A stream-name expression is asked about every stream, `$`-streams
        // included; an event-type one leaves those out, as no filter does.
        stream_prefixes: if on_streams {
            Filter::every_stream().stream_prefixes
        } else {
            Vec::new()
        },
        event_type_prefixes: Vec::new(),
        gate: Some(gate),
    };
    Ok(CallFilter {
        filter,
        overrun: Some(overrun),
    })
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

fn compile(pattern: &str) -> Result<Regex, Status> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(Status::invalid_argument(format!(
            "the filter's regular expression is {} bytes long, more than {MAX_PATTERN_BYTES}",
            pattern.len()
        )));
    }
    RegexBuilder::new(pattern)
        .backtrack_limit(BACKTRACK_LIMIT)
        .delegate_size_limit(COMPILED_BYTES)
        .max_prog_size(PROGRAM_INSTRUCTIONS)
        .build()
        .map_err(|e| {
            Status::invalid_argument(format!("invalid regular expression '{pattern}': {e}"))
        })
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
        assert!(overrun.failure().is_none());
        let hostile = format!("{}!", "a".repeat(40));
        assert!(!admits(&f, "s", &hostile));
        let status = overrun.failure().expect("overran");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(!admits(&f, "s", "aa"), "nothing matches after an overrun");
    }
}
