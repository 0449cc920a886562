// temporary scratch; will be deleted
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{Device, Module, Tensor};
fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let path = std::env::args().nth(1).expect("path");
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let ct = gguf_file::Content::read(&mut f)?;
    let mut names: Vec<String> = ct
        .tensor_infos
        .iter()
        .filter(|(n, i)| {
            i.shape.rank() == 2 && (n.starts_with("blk.0.attn_q") || n.starts_with("token"))
        })
        .map(|(n, _)| n.clone())
        .collect();
    names.sort();
    for name in &names {
        let q = ct.tensor(&mut f, name, &dev)?;
        let w = q.dequantize(&dev)?;
        let (_, k) = w.dims2()?;
        for m in [1usize, 37] {
            let mut xv: Vec<f32> = Tensor::randn(0f32, 1.0, (m * k,), &dev)?.to_vec1()?;
            for (i, v) in xv.iter_mut().enumerate() {
                if i % k == 7 || i % k == 300 {
                    *v = 400.0
                }
            }
            let x = Tensor::from_vec(xv.clone(), (1, m, k), &dev)?;
            // emulate Q8_0 activation quantization, exact f32 weights
            let mut xq = xv.clone();
            for b in xq.chunks_mut(32) {
                let a = b.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = a / 127.0;
                let id = if d > 0.0 { 1.0 / d } else { 0.0 };
                let d16 = d;
                for v in b.iter_mut() {
                    *v = (*v * id).round() * d16;
                }
            }
            let xq = Tensor::from_vec(xq, (1, m, k), &dev)?;
            let emu = xq.broadcast_matmul(&w.t()?)?;
            let want = x.broadcast_matmul(&w.t()?)?;
            let qm = QMatMul::from_qtensor(ct.tensor(&mut f, name, &dev)?)?;
            let got = qm.forward(&x)?;
            let err = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
            let err_emu = (emu - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            println!("{name} {:?} {:?} m={m}: max err {err:.4} (emulated act-quant {err_emu:.4}) of max {scale:.3}", q.dtype(), w.dims());
        }
    }
    Ok(())
}
