//! CTranslate2 `model.bin`: header, variable table, aliases.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = brisk_backends::whisper::ct2::Ct2Model::parse(data);
});
