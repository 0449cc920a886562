//! Uploaded audio: container sniffing, decoding, downmix and resampling.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: {
    // `decode_to_mono` catches panics inside the demuxers (symphonia panics
    // on, e.g., a WAV with a zero sample rate) and reports bad input; the
    // hook libfuzzer-sys installs would abort on those caught panics. A
    // panic that escapes still aborts: libfuzzer-sys catches it and aborts.
    std::panic::set_hook(Box::new(|_| {}));
}, |data: &[u8]| {
    // Errors are fine; escaped panics, hangs and unbounded allocation are not.
    let _ = brisk_backends::whisper::audio::decode_to_mono_16k(data, 60.0);
});
