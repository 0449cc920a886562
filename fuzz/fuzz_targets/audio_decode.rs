//! Uploaded audio: container sniffing, decoding, downmix and resampling.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Errors are fine; panics, hangs and unbounded allocation are not.
    let _ = brisk_backends::whisper::audio::decode_to_mono_16k(data, 60.0);
});
