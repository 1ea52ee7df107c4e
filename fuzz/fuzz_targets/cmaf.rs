#![no_main]
//! See `cascade_fuzz::cmaf` for the input layout and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cascade_fuzz::cmaf(data));
