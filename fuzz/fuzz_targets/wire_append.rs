//! `service::convert::append_request` on any `AppendRequest`: never panics,
//! and accepts exactly what the API rules accept. The input is decoded as
//! protobuf; input that does not decode drives a structured generator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use strata_fuzz::targets::{self, Tape};
use strata_proto::v1;

fuzz_target!(|data: &[u8]| {
    let req = match v1::AppendRequest::decode(data) {
        Ok(req) => req,
        Err(_) => targets::gen_append(&mut Tape::new(data)),
    };
    targets::check_append(req);
});
