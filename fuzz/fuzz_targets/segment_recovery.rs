//! A valid log generated from the input, damaged by a few mutations:
//! recovery must keep exactly the committed records, truncate a torn tail
//! or refuse with `Corrupt`, as the reference model predicts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_fuzz::targets::segment_recovery(data);
});
