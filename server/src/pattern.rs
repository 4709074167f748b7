//! Regular-expression filters on stream names or event types, as the
//! store's [`Filter`]: the expression becomes the event predicate of the
//! filter's gate, compiled once with fancy-regex, which has the
//! look-arounds KurrentDB's clients send (e.g.
//! `^(?!(\$.+$|PersistentConfig\d+$))` on event types, the Python client's
//! default, or `^[^\$].*`). It matches anywhere in the name, as
//! KurrentDB's `IsMatch` does; a stream-name expression also sees
//! `$`-streams, which pass when it matches them.
//!
//! A pattern is at most [`MAX_PATTERN_BYTES`] long and its compiled form
//! bounded; an invalid one is refused with the regex error. One match may
//! backtrack at most [`BACKTRACK_LIMIT`] times: a match that needs more
//! marks the filter's [`Overrun`], and from then on the predicate admits
//! nothing without running, so a hostile pattern costs the server at most
//! one limit's work per event it scans, and an overrun only once.
//!
//! Used by the KurrentDB layer for reads and subscriptions (one filter per
//! call) and by consumer groups (one per group, its source recorded in the
//! group's definition). The store only evaluates the predicate and knows
//! nothing of regular expressions.

use std::sync::{Arc, OnceLock};

use fancy_regex::{Regex, RegexBuilder};

use crate::store::{Filter, StreamGate};

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// How many times one match may backtrack (fancy-regex's default is a
/// million; names are short, so a benign pattern stays far below this).
pub const BACKTRACK_LIMIT: usize = 100_000;

/// The approximate size limit of a pattern's compiled automata, in bytes.
const COMPILED_BYTES: usize = 1 << 20;

/// The largest backtracking program of a pattern, in instructions.
const PROGRAM_INSTRUCTIONS: usize = 10_000;

/// A regular expression over stream names or over event types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Whether it is asked about stream names (else event types).
    pub on_streams: bool,
    /// The expression.
    pub source: String,
}

/// Whether a filter's expression overran its limits on some name, and how
/// (the fancy-regex runtime error). Written by the store's read paths
/// through the predicate, read by whoever owns the filter.
#[derive(Clone, Default)]
pub struct Overrun(Arc<OnceLock<String>>);

impl Overrun {
    /// How the match overran, once one did. The name it overran on is not
    /// kept: only the pattern is the caller's.
    pub fn reason(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    fn set(&self, why: String) {
        if self.0.set(why).is_ok() {
            tracing::warn!(
                reason = self.reason().unwrap_or_default(),
                "a filter's regular expression overran its limits; it matches nothing more"
            );
        }
    }
}

impl Pattern {
    /// The store's filter of this expression, and the mark it sets when a
    /// match overruns; the error says why an expression is refused.
    pub fn filter(&self) -> Result<(Filter, Overrun), String> {
        let regex = compile(&self.source)?;
        let overrun = Overrun::default();
        let seen = overrun.clone();
        let on_streams = self.on_streams;
        let gate = StreamGate::events(move |stream, event_type| {
            if seen.reason().is_some() {
                return false;
            }
            let name = if on_streams { stream } else { event_type };
            regex.is_match(name).unwrap_or_else(|e| {
                seen.set(e.to_string());
                false
            })
        });
        let filter = Filter {
            // A stream-name expression is asked about every stream,
            // `$`-streams included; an event-type one leaves those out, as
            // no filter does.
            stream_prefixes: if on_streams {
                Filter::every_stream().stream_prefixes
            } else {
                Vec::new()
            },
            event_type_prefixes: Vec::new(),
            gate: Some(gate),
        };
        Ok((filter, overrun))
    }
}

fn compile(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "the filter's regular expression is {} bytes long, more than {MAX_PATTERN_BYTES}",
            pattern.len()
        ));
    }
    RegexBuilder::new(pattern)
        .backtrack_limit(BACKTRACK_LIMIT)
        .delegate_size_limit(COMPILED_BYTES)
        .max_prog_size(PROGRAM_INSTRUCTIONS)
        .build()
        .map_err(|e| format!("invalid regular expression '{pattern}': {e}"))
}
