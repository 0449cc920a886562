//! Writing ONNX models: a small graph builder and the protobuf encoding of
//! the few `onnx.proto` messages it needs.
//!
//! Why brisk writes ONNX itself: no package ships all-MiniLM-L6-v2 (or a
//! cross-encoder) as a float32 `.onnx`, while the safetensors weights are
//! shipped. A BERT encoder is a short, fixed graph, so brisk builds it at
//! load time from the safetensors tensors and hands the bytes to ONNX
//! Runtime (`commit_from_memory`): no Python, no converter, nothing written
//! to disk. The graph uses ONNX Runtime's fused CPU kernels (`com.microsoft`
//! domain: EmbedLayerNormalization, Attention, SkipLayerNormalization,
//! BiasGelu, DynamicQuantizeMatMul), the same ones its transformer optimizer
//! would produce from an exported graph.
//!
//! Only the protobuf wire format is hand-written here (varints and
//! length-delimited fields, a few dozen lines); the field numbers are those
//! of `onnx.proto` (IR version 8).

/// ONNX `TensorProto.DataType` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32 = 1,
    I8 = 3,
    I32 = 6,
    I64 = 7,
}

/// An attribute value of a node.
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Float(f32),
}

/// A protobuf message being encoded.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn int(&mut self, field: u32, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }
    fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn msg(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }
}

/// Little-endian bytes of numbers (ONNX's `raw_data` layout), in one
/// allocation of the final size.
fn le_bytes<T: Copy, const N: usize>(data: &[T], bytes_of: fn(T) -> [u8; N]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(data.len() * N);
    for &v in data {
        bytes.extend_from_slice(&bytes_of(v));
    }
    bytes
}

/// One tensor dimension: fixed or named (dynamic).
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

struct Node {
    op: &'static str,
    domain: &'static str,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attrs: Vec<(&'static str, Attr)>,
}

struct ValueInfo {
    name: String,
    dtype: DType,
    dims: Vec<Dim>,
}

/// A graph under construction. Initializers are kept as raw little-endian
/// bytes until [`Graph::encode`].
#[derive(Default)]
pub struct Graph {
    nodes: Vec<Node>,
    initializers: Vec<(String, DType, Vec<i64>, Vec<u8>)>,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    counter: usize,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn input(&mut self, name: &str, dtype: DType, dims: Vec<Dim>) -> String {
        self.inputs.push(ValueInfo {
            name: name.to_string(),
            dtype,
            dims,
        });
        name.to_string()
    }

    pub fn output(&mut self, name: &str, dtype: DType, dims: Vec<Dim>) {
        self.outputs.push(ValueInfo {
            name: name.to_string(),
            dtype,
            dims,
        });
    }

    /// A float32 constant.
    pub fn f32s(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        self.initializers.push((
            name.to_string(),
            DType::F32,
            dims.to_vec(),
            le_bytes(data, f32::to_le_bytes),
        ));
        name.to_string()
    }

    /// A float32 constant given as its little-endian bytes (as safetensors
    /// stores them).
    pub fn f32_bytes(&mut self, name: &str, dims: &[i64], bytes: &[u8]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize * 4, bytes.len());
        self.initializers
            .push((name.to_string(), DType::F32, dims.to_vec(), bytes.to_vec()));
        name.to_string()
    }

    /// An int8 constant.
    pub fn i8s(&mut self, name: &str, dims: &[i64], data: &[i8]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        let bytes = data.iter().map(|v| *v as u8).collect();
        self.initializers
            .push((name.to_string(), DType::I8, dims.to_vec(), bytes));
        name.to_string()
    }

    /// An int64 constant.
    pub fn i64s(&mut self, name: &str, dims: &[i64], data: &[i64]) -> String {
        self.initializers.push((
            name.to_string(),
            DType::I64,
            dims.to_vec(),
            le_bytes(data, i64::to_le_bytes),
        ));
        name.to_string()
    }

    /// Adds a node and returns its output names (`n_out` fresh names, or the
    /// given ones). An empty input name is an omitted optional input.
    pub fn node(
        &mut self,
        op: &'static str,
        domain: &'static str,
        inputs: &[&str],
        n_out: usize,
        attrs: Vec<(&'static str, Attr)>,
    ) -> Vec<String> {
        let outputs: Vec<String> = (0..n_out)
            .map(|i| {
                self.counter += 1;
                format!("{op}_{}_{i}", self.counter)
            })
            .collect();
        self.nodes.push(Node {
            op,
            domain,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.clone(),
            attrs,
        });
        outputs
    }

    /// A single-output node.
    pub fn op(
        &mut self,
        op: &'static str,
        domain: &'static str,
        inputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
    ) -> String {
        self.node(op, domain, inputs, 1, attrs).remove(0)
    }

    /// Renames a value to a graph output name (an Identity node).
    pub fn alias(&mut self, from: &str, to: &str) {
        self.nodes.push(Node {
            op: "Identity",
            domain: "",
            inputs: vec![from.to_string()],
            outputs: vec![to.to_string()],
            attrs: Vec::new(),
        });
    }

    /// The serialised `ModelProto` (opset 17 plus `com.microsoft` 1).
    pub fn encode(self) -> Vec<u8> {
        // The weights are nearly all of the bytes (~90 MB for MiniLM): they
        // are copied once, into a buffer sized up front, rather than into
        // each enclosing message in turn (and a growing Vec's reallocations),
        // which cost a lazy load about a tenth of a second.
        // The graph is written after room for its own key and length in the
        // model (ModelProto's fields may come in any order, so the model's
        // other fields follow it): the buffer is never copied again.
        const HEAD: usize = 11; // a key byte and a varint of up to ten
        let raw_bytes: usize = self.initializers.iter().map(|i| i.3.len()).sum();
        let mut graph = Msg(Vec::with_capacity(HEAD + raw_bytes + 64 * 1024));
        graph.0.resize(HEAD, 0);
        for n in self.nodes {
            let mut m = Msg::default();
            for i in &n.inputs {
                m.string(1, i);
            }
            for o in &n.outputs {
                m.string(2, o);
            }
            m.string(4, n.op);
            for (name, value) in n.attrs {
                let mut a = Msg::default();
                a.string(1, name);
                match value {
                    Attr::Float(f) => {
                        a.float(2, f);
                        a.int(20, 1);
                    }
                    Attr::Int(i) => {
                        a.int(3, i);
                        a.int(20, 2);
                    }
                }
                m.msg(5, a);
            }
            if !n.domain.is_empty() {
                m.string(7, n.domain);
            }
            graph.msg(1, m);
        }
        graph.string(2, "brisk");
        for (name, dtype, dims, raw) in self.initializers {
            // A TensorProto whose raw_data (field 9) comes last, written in
            // place: the header, then the data's key, length and bytes.
            let mut t = Msg::default();
            for d in dims {
                t.int(1, d);
            }
            t.int(2, dtype as i64);
            t.string(8, &name);
            let mut data_key = Msg::default();
            data_key.key(9, 2);
            data_key.varint(raw.len() as u64);
            graph.key(5, 2);
            graph.varint((t.0.len() + data_key.0.len() + raw.len()) as u64);
            graph.0.extend_from_slice(&t.0);
            graph.0.extend_from_slice(&data_key.0);
            graph.0.extend_from_slice(&raw);
        }
        for (field, infos) in [(11, self.inputs), (12, self.outputs)] {
            for v in infos {
                graph.msg(field, value_info(&v));
            }
        }
        let mut head = Msg::default();
        head.key(7, 2);
        head.varint((graph.0.len() - HEAD) as u64);
        let start = HEAD - head.0.len();
        graph.0[start..HEAD].copy_from_slice(&head.0);
        graph.0.drain(..start); // a move within the buffer, no new pages
        let mut model = graph;
        model.int(1, 8); // ir_version
        model.string(2, "brisk");
        for (domain, version) in [("", 17), ("com.microsoft", 1)] {
            let mut o = Msg::default();
            if !domain.is_empty() {
                o.string(1, domain);
            }
            o.int(2, version);
            model.msg(8, o);
        }
        model.0
    }
}

fn value_info(v: &ValueInfo) -> Msg {
    let mut shape = Msg::default();
    for d in &v.dims {
        let mut dim = Msg::default();
        match d {
            Dim::Fixed(n) => dim.int(1, *n),
            Dim::Named(s) => dim.string(2, s),
        }
        shape.msg(1, dim);
    }
    let mut tensor = Msg::default();
    tensor.int(1, v.dtype as i64);
    tensor.msg(2, shape);
    let mut ty = Msg::default();
    ty.msg(1, tensor);
    let mut m = Msg::default();
    m.string(1, &v.name);
    m.msg(2, ty);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (field, wire type, payload length or value) of a message's fields.
    fn fields(mut b: &[u8]) -> Vec<(u64, u8, u64)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= ((byte & 0x7f) as u64) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let (field, wire) = (key >> 3, (key & 7) as u8);
            let v = varint(&mut b);
            if wire == 2 {
                b = &b[v as usize..];
            }
            out.push((field, wire, v));
        }
        out
    }

    #[test]
    fn model_is_the_graph_then_the_other_fields() {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, vec![Dim::Named("n"), Dim::Fixed(2)]);
        let w = g.f32s("w", &[2], &[1.0, 2.0]);
        let e = g.f32_bytes("e", &[2], &[0, 0, 128, 63, 0, 0, 0, 64]);
        let y = g.op("Add", "", &[&x, &w], vec![]);
        let z = g.op("Add", "", &[&y, &e], vec![]);
        g.output(&z, DType::F32, vec![Dim::Named("n"), Dim::Fixed(2)]);
        let model = g.encode();
        let top = fields(&model);
        let numbers: Vec<u64> = top.iter().map(|f| f.0).collect();
        assert_eq!(numbers, vec![7, 1, 2, 8, 8], "{top:?}");
        // The graph's length covers exactly its bytes, which hold both
        // initializers with their raw data.
        let len = top[0].2 as usize;
        let head = 1 + (64 - (len as u64 | 1).leading_zeros() as usize).div_ceil(7);
        let graph = &model[head..head + len];
        let inits: Vec<_> = fields(graph).into_iter().filter(|f| f.0 == 5).collect();
        assert_eq!(inits.len(), 2);
        assert!(model.windows(8).any(|w| w == [0, 0, 128, 63, 0, 0, 0, 64]));
    }

    #[test]
    fn varints_follow_the_protobuf_encoding() {
        let mut m = Msg::default();
        m.varint(1);
        m.varint(300);
        m.int(1, -1);
        assert_eq!(&m.0[..3], &[0x01, 0xAC, 0x02]);
        // Field 1 varint key, then -1 as ten bytes (two's complement).
        assert_eq!(m.0[3], 0x08);
        assert_eq!(m.0.len(), 3 + 1 + 10);
    }
}
