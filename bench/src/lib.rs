//! strata-bench.
