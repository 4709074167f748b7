//! Strata's fuzz targets. The logic lives in [`targets`], which
//! `server/tests/fuzz_smoke.rs` also compiles, so the same checks run on
//! the stable toolchain without libFuzzer.

pub mod targets;
