//! strata-client.
