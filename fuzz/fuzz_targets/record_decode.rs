//! Arbitrary bytes as the records of a segment behind a valid header:
//! `verify` and opening the store must never panic, and must agree with the
//! reference decoder of format v1.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_fuzz::targets::record_decode(data);
});
