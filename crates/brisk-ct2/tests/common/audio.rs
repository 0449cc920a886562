//! Reads a WAV or FLAC file to mono f32 samples at its own rate (tests and
//! examples only; the server decodes with brisk-backends' audio module).

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

pub fn read_mono(path: &std::path::Path) -> (Vec<f32>, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .expect("probe");
    let mut format = probed.format;
    let track = format.default_track().expect("a track").clone();
    let mut dec = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .expect("decoder");
    let rate = track.codec_params.sample_rate.expect("sample rate");
    let mut out = Vec::new();
    while let Ok(packet) = format.next_packet() {
        let buf = dec.decode(&packet).expect("decode");
        let ch = buf.spec().channels.count();
        let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, *buf.spec());
        sb.copy_interleaved_ref(buf);
        for frame in sb.samples().chunks_exact(ch) {
            out.push(frame.iter().sum::<f32>() / ch as f32);
        }
    }
    (out, rate)
}
