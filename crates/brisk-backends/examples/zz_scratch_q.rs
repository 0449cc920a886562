// temporary scratch; will be deleted
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{Device, Module, Tensor};
fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let path = std::env::args().nth(1).expect("path");
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let ct = gguf_file::Content::read(&mut f)?;
    let mut names: Vec<String> = ct.tensor_infos.iter()
        .filter(|(n, i)| i.shape.rank() == 2 && (n.starts_with("blk.0.") || n.starts_with("blk.29.")))
        .map(|(n, _)| n.clone()).collect();
    names.sort();
    for name in &names {
        let q = ct.tensor(&mut f, name, &dev)?;
        let w = q.dequantize(&dev)?;
        let (_, k) = w.dims2()?;
        for m in [1usize, 37] {
            let x = Tensor::randn(0f32, 1.0, (1, m, k), &dev)?;
            let want = x.broadcast_matmul(&w.t()?)?;
            let qm = QMatMul::from_qtensor(ct.tensor(&mut f, name, &dev)?)?;
            let got = qm.forward(&x)?;
            let err = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
            println!("{name} {:?} {:?} m={m}: max err {err:.4} of max {scale:.3}", q.dtype(), w.dims());
        }
    }
    Ok(())
}
