//! GGUF header and metadata, then brisk's tokenizer built from it.
#![no_main]

use candle_core::quantized::gguf_file::Content;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut cursor = std::io::Cursor::new(data);
    if let Ok(content) = Content::read(&mut cursor) {
        let _ = brisk_backends::llama::tokenizer::GgufTokenizer::from_gguf(&content.metadata);
    }
});
