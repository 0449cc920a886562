// temporary scratch; will be deleted
use candle_core::quantized::gguf_file;
fn main() -> candle_core::Result<()> {
    let path = std::env::args().nth(1).expect("path");
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let ct = gguf_file::Content::read(&mut f)?;
    let mut v: Vec<_> = ct.tensor_infos.iter().collect();
    v.sort_by_key(|(n, _)| n.to_string());
    println!("{} tensors, data offset {}", v.len(), ct.tensor_data_offset);
    for (n, i) in v.iter().filter(|(n, _)| {
        n.starts_with("blk.0.") || n.starts_with("blk.1.") || !n.starts_with("blk")
    }) {
        println!("{n} {:?} {:?} off={}", i.ggml_dtype, i.shape, i.offset);
    }
    Ok(())
}
