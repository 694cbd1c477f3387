//! `vendor::parse(Media::Json, ..)`: see `webhook_guard_fuzz::fuzz_vendor`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_guard::media::Media;

fuzz_target!(|data: &[u8]| webhook_guard_fuzz::fuzz_vendor(Media::Json, data));
