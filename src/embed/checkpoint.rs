//! A torch-free reader for PyTorch `torch.save` checkpoints (the zip container, format version 3).
//!
//! The file is memory-mapped; the zip central directory gives each member's place, a minimal pickle
//! virtual machine decodes `data.pkl` (only the opcodes and globals that a plain `state_dict` of
//! float32/int64 tensors uses; anything else is rejected), and tensors are read in place as
//! little-endian `f32`/`i64` slices of the mapped storages.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

/// Errors while opening or reading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be opened or mapped.
    #[error("cannot read checkpoint {path}: {source}")]
    Io {
        /// The checkpoint path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The zip container is malformed or uses a feature this reader does not support.
    #[error("checkpoint is not a readable zip container: {0}")]
    Zip(String),
    /// A member the format requires is absent.
    #[error("checkpoint member {0:?} is missing")]
    MissingMember(String),
    /// `data.pkl` is malformed or uses something outside the supported subset.
    #[error("checkpoint pickle, byte {offset}: {msg}")]
    Pickle {
        /// Byte offset of the offending opcode in `data.pkl`.
        offset: usize,
        /// What went wrong.
        msg: String,
    },
    /// A pickle opcode outside the supported subset.
    #[error("checkpoint pickle, byte {offset}: unsupported opcode 0x{opcode:02x}")]
    UnsupportedOpcode {
        /// Byte offset of the opcode in `data.pkl`.
        offset: usize,
        /// The opcode byte.
        opcode: u8,
    },
    /// No tensor of that name is in the checkpoint.
    #[error("tensor {0:?} is not in the checkpoint")]
    UnknownTensor(String),
    /// The tensor exists with another element type.
    #[error("tensor {name:?} has dtype {found}, expected {expected}")]
    DType {
        /// Tensor name.
        name: String,
        /// The requested type.
        expected: &'static str,
        /// The stored type.
        found: &'static str,
    },
    /// The tensor's shape, strides or storage extent are inconsistent or unsupported.
    #[error("tensor {name:?}: {msg}")]
    Layout {
        /// Tensor name.
        name: String,
        /// What is wrong.
        msg: String,
    },
}

type Result<T> = std::result::Result<T, CheckpointError>;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// `torch.float32`, little-endian.
    F32,
    /// `torch.int64`, little-endian.
    I64,
}

impl DType {
    fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I64 => "int64",
        }
    }
    fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I64 => 8,
        }
    }
}

/// A float32 tensor borrowed from the mapped checkpoint.
#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    /// Shape, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements in row-major order.
    pub data: &'a [f32],
}

/// An int64 tensor borrowed from the mapped checkpoint.
#[derive(Debug, Clone)]
pub struct TensorViewI64<'a> {
    /// Shape, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements in row-major order.
    pub data: &'a [i64],
}

#[derive(Debug, Clone)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    /// Byte offset of the first element in the mapped file.
    start: usize,
    numel: usize,
}

/// An opened checkpoint: the mapped file and an index of its tensors.
#[derive(Debug)]
pub struct Checkpoint {
    map: Mmap,
    entries: HashMap<String, Entry>,
    order: Vec<String>,
}

impl Checkpoint {
    /// Maps the file, parses the zip directory and `data.pkl`, and checks every tensor's extent.
    pub fn open(path: &Path) -> Result<Self> {
        if !cfg!(target_endian = "little") {
            return Err(CheckpointError::Zip(
                "this reader maps little-endian tensor data in place and needs a little-endian CPU"
                    .into(),
            ));
        }
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only; the checkpoint is not expected to be modified while open
        // (the model directory is written only by atomic rename of complete files).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let members = parse_zip(&map)?;
        let pkl_name = members
            .keys()
            .filter(|n| n.ends_with("/data.pkl"))
            .min_by_key(|n| n.len())
            .cloned()
            .ok_or_else(|| CheckpointError::MissingMember("<prefix>/data.pkl".into()))?;
        let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
        let pkl = member_bytes(&map, &members, &pkl_name)?;
        let tensors = unpickle(pkl)?;

        let mut entries = HashMap::with_capacity(tensors.len());
        let mut order = Vec::with_capacity(tensors.len());
        for (name, t) in tensors {
            let member = format!("{prefix}data/{}", t.storage.key);
            let m = members
                .get(&member)
                .ok_or_else(|| CheckpointError::MissingMember(member.clone()))?;
            if m.method != 0 {
                return Err(CheckpointError::Zip(format!(
                    "member {member} is compressed (method {}); tensor storages must be stored",
                    m.method
                )));
            }
            let esize = t.storage.dtype.size();
            let layout = |msg: String| CheckpointError::Layout {
                name: name.clone(),
                msg,
            };
            let storage_bytes = t
                .storage
                .numel
                .checked_mul(esize)
                .ok_or_else(|| layout("storage size overflows".into()))?;
            if storage_bytes > m.size {
                return Err(layout(format!(
                    "storage declares {} elements but member {member} holds {} bytes",
                    t.storage.numel, m.size
                )));
            }
            let numel = t
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| layout("element count overflows".into()))?;
            if t.stride.len() != t.shape.len() {
                return Err(layout("stride and shape have different ranks".into()));
            }
            let mut expect = 1usize;
            for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
                if d > 1 && s != expect {
                    return Err(layout(format!(
                        "strides {:?} for shape {:?} are not contiguous row-major",
                        t.stride, t.shape
                    )));
                }
                expect = expect.saturating_mul(d);
            }
            if t.offset
                .checked_add(numel)
                .is_none_or(|end| end > t.storage.numel)
            {
                return Err(layout(format!(
                    "offset {} + {numel} elements exceed the storage of {}",
                    t.offset, t.storage.numel
                )));
            }
            let start = m.data_start + t.offset * esize;
            if !start.is_multiple_of(esize) {
                return Err(layout("tensor data is not aligned in the file".into()));
            }
            if entries.contains_key(&name) {
                return Err(layout("name occurs twice".into()));
            }
            order.push(name.clone());
            entries.insert(
                name,
                Entry {
                    dtype: t.storage.dtype,
                    shape: t.shape,
                    start,
                    numel,
                },
            );
        }
        Ok(Self {
            map,
            entries,
            order,
        })
    }

    /// Tensor names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// Element type and shape of a tensor.
    pub fn info(&self, name: &str) -> Result<(DType, &[usize])> {
        let e = self.entry(name)?;
        Ok((e.dtype, &e.shape))
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| CheckpointError::UnknownTensor(name.to_string()))
    }

    fn bytes(&self, name: &str, dtype: DType) -> Result<(&Entry, &[u8])> {
        let e = self.entry(name)?;
        if e.dtype != dtype {
            return Err(CheckpointError::DType {
                name: name.to_string(),
                expected: dtype.name(),
                found: e.dtype.name(),
            });
        }
        let bytes = self
            .map
            .get(e.start..e.start + e.numel * dtype.size())
            .ok_or_else(|| CheckpointError::Layout {
                name: name.to_string(),
                msg: "data lies outside the file".into(),
            })?;
        if !(bytes.as_ptr() as usize).is_multiple_of(dtype.size()) {
            return Err(CheckpointError::Layout {
                name: name.to_string(),
                msg: "data is not aligned in memory".into(),
            });
        }
        Ok((e, bytes))
    }

    /// A float32 tensor by name.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let (e, bytes) = self.bytes(name, DType::F32)?;
        // SAFETY: `bytes` is aligned for f32 (checked above), its length is numel * 4, every bit
        // pattern is a valid f32, and the CPU is little-endian like the stored data (checked in `open`).
        let data = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), e.numel) };
        Ok(TensorView {
            shape: e.shape.clone(),
            data,
        })
    }

    /// An int64 tensor by name (e.g. BatchNorm's `num_batches_tracked`).
    pub fn tensor_i64(&self, name: &str) -> Result<TensorViewI64<'_>> {
        let (e, bytes) = self.bytes(name, DType::I64)?;
        // SAFETY: as in `tensor`, with 8-byte alignment and i64 elements.
        let data = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i64>(), e.numel) };
        Ok(TensorViewI64 {
            shape: e.shape.clone(),
            data,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// zip

struct Member {
    method: u16,
    data_start: usize,
    size: usize,
}

fn zerr(msg: impl Into<String>) -> CheckpointError {
    CheckpointError::Zip(msg.into())
}

fn rd<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N]> {
    b.get(off..off.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| zerr(format!("truncated structure at byte {off}")))
}
fn u16_at(b: &[u8], off: usize) -> Result<u16> {
    rd::<2>(b, off).map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    rd::<4>(b, off).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], off: usize) -> Result<u64> {
    rd::<8>(b, off).map(u64::from_le_bytes)
}
fn to_usize(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| zerr("offset does not fit in memory"))
}

fn parse_zip(b: &[u8]) -> Result<HashMap<String, Member>> {
    const EOCD: &[u8] = b"PK\x05\x06";
    if b.len() < 22 {
        return Err(zerr("file too short"));
    }
    let lowest = b.len().saturating_sub(22 + 65535);
    let eocd = (lowest..=b.len() - 22)
        .rev()
        .find(|&i| &b[i..i + 4] == EOCD)
        .ok_or_else(|| zerr("no end-of-central-directory record"))?;
    let mut count = u64::from(u16_at(b, eocd + 10)?);
    let mut cd_size = u64::from(u32_at(b, eocd + 12)?);
    let mut cd_off = u64::from(u32_at(b, eocd + 16)?);
    if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_off == 0xFFFF_FFFF {
        // zip64: the locator sits right before the classic record
        let loc = eocd
            .checked_sub(20)
            .ok_or_else(|| zerr("zip64 locator missing"))?;
        if &rd::<4>(b, loc)? != b"PK\x06\x07" {
            return Err(zerr("zip64 locator missing"));
        }
        let z = to_usize(u64_at(b, loc + 8)?)?;
        if &rd::<4>(b, z)? != b"PK\x06\x06" {
            return Err(zerr("zip64 end-of-central-directory record missing"));
        }
        count = u64_at(b, z + 32)?;
        cd_size = u64_at(b, z + 40)?;
        cd_off = u64_at(b, z + 48)?;
    }
    let cd_off = to_usize(cd_off)?;
    let cd_end = cd_off
        .checked_add(to_usize(cd_size)?)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| zerr("central directory lies outside the file"))?;
    let mut members = HashMap::new();
    let mut p = cd_off;
    for _ in 0..count {
        if p + 46 > cd_end || &b[p..p + 4] != b"PK\x01\x02" {
            return Err(zerr(format!("bad central directory entry at byte {p}")));
        }
        let method = u16_at(b, p + 10)?;
        let comp = u64::from(u32_at(b, p + 20)?);
        let mut uncomp = u64::from(u32_at(b, p + 24)?);
        let nlen = usize::from(u16_at(b, p + 28)?);
        let elen = usize::from(u16_at(b, p + 30)?);
        let clen = usize::from(u16_at(b, p + 32)?);
        let mut lho = u64::from(u32_at(b, p + 42)?);
        let name_bytes = b
            .get(p + 46..p + 46 + nlen)
            .ok_or_else(|| zerr("truncated member name"))?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| zerr("member name is not UTF-8"))?
            .to_string();
        let extra = b
            .get(p + 46 + nlen..p + 46 + nlen + elen)
            .ok_or_else(|| zerr("truncated extra field"))?;
        let mut comp = comp;
        if uncomp == 0xFFFF_FFFF || comp == 0xFFFF_FFFF || lho == 0xFFFF_FFFF {
            let mut q = 0;
            let mut found = false;
            while q + 4 <= extra.len() {
                let id = u16_at(extra, q)?;
                let len = usize::from(u16_at(extra, q + 2)?);
                if id == 1 {
                    let mut r = q + 4;
                    for field in [&mut uncomp, &mut comp, &mut lho] {
                        if *field == 0xFFFF_FFFF {
                            *field = u64_at(extra, r)?;
                            r += 8;
                        }
                    }
                    found = true;
                    break;
                }
                q += 4 + len;
            }
            if !found {
                return Err(zerr(format!(
                    "member {name}: zip64 sizes without zip64 field"
                )));
            }
        }
        if method == 0 && comp != uncomp {
            return Err(zerr(format!("member {name}: stored sizes disagree")));
        }
        let lho = to_usize(lho)?;
        if &rd::<4>(b, lho)? != b"PK\x03\x04" {
            return Err(zerr(format!("member {name}: bad local header")));
        }
        let data_start =
            lho + 30 + usize::from(u16_at(b, lho + 26)?) + usize::from(u16_at(b, lho + 28)?);
        let size = to_usize(comp)?;
        if data_start.checked_add(size).is_none_or(|e| e > b.len()) {
            return Err(zerr(format!(
                "member {name} extends past the end of the file"
            )));
        }
        members.insert(
            name,
            Member {
                method,
                data_start,
                size,
            },
        );
        p += 46 + nlen + elen + clen;
    }
    Ok(members)
}

fn member_bytes<'a>(
    map: &'a [u8],
    members: &HashMap<String, Member>,
    name: &str,
) -> Result<&'a [u8]> {
    let m = members
        .get(name)
        .ok_or_else(|| CheckpointError::MissingMember(name.to_string()))?;
    if m.method != 0 {
        return Err(zerr(format!(
            "member {name} is compressed (method {})",
            m.method
        )));
    }
    Ok(&map[m.data_start..m.data_start + m.size])
}

// ---------------------------------------------------------------------------------------------
// pickle

#[derive(Debug, Clone)]
struct StorageRef {
    dtype: DType,
    key: String,
    numel: usize,
}

#[derive(Debug, Clone)]
struct TensorRef {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Val {
    Mark,
    Int(i64),
    False,
    Str(String),
    Tuple(Vec<Val>),
    Dict(Vec<(Val, Val)>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
    OrderedDict,
}

struct Vm<'a> {
    b: &'a [u8],
    pos: usize,
    op_at: usize,
    stack: Vec<Val>,
    memo: HashMap<u32, Val>,
}

impl<'a> Vm<'a> {
    fn err(&self, msg: impl Into<String>) -> CheckpointError {
        CheckpointError::Pickle {
            offset: self.op_at,
            msg: msg.into(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .b
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or_else(|| self.err("truncated"))?;
        self.pos += n;
        Ok(s)
    }
    fn take_arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        s.try_into().map_err(|_| self.err("truncated"))
    }
    fn line(&mut self) -> Result<String> {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| self.err("unterminated GLOBAL"))?;
        let s = std::str::from_utf8(&rest[..end])
            .map_err(|_| self.err("GLOBAL name is not UTF-8"))?
            .to_string();
        self.pos += end + 1;
        Ok(s)
    }
    fn pop(&mut self) -> Result<Val> {
        match self.stack.pop() {
            Some(Val::Mark) | None => Err(self.err("stack underflow")),
            Some(v) => Ok(v),
        }
    }
    fn pop_mark(&mut self) -> Result<Vec<Val>> {
        let m = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Val::Mark))
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&self) -> Result<&Val> {
        match self.stack.last() {
            Some(Val::Mark) | None => Err(self.err("nothing to memoise")),
            Some(v) => Ok(v),
        }
    }
    fn put(&mut self, idx: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }
    fn get(&mut self, idx: u32) -> Result<()> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| self.err(format!("memo {idx} is empty")))?;
        self.stack.push(v);
        Ok(())
    }

    fn persistent_load(&self, pid: Val) -> Result<Val> {
        let Val::Tuple(t) = pid else {
            return Err(self.err("persistent id is not a tuple"));
        };
        match t.as_slice() {
            [
                Val::Str(kind),
                Val::Global(m, cls),
                Val::Str(key),
                Val::Str(_loc),
                Val::Int(n),
            ] if kind == "storage" && m == "torch" => {
                let dtype = match cls.as_str() {
                    "FloatStorage" => DType::F32,
                    "LongStorage" => DType::I64,
                    other => {
                        return Err(self.err(format!("unsupported storage type torch.{other}")));
                    }
                };
                let numel = usize::try_from(*n).map_err(|_| self.err("negative storage size"))?;
                Ok(Val::Storage(StorageRef {
                    dtype,
                    key: key.clone(),
                    numel,
                }))
            }
            _ => Err(self.err("unsupported persistent id")),
        }
    }

    fn reduce(&self, f: Val, args: Val) -> Result<Val> {
        let (Val::Global(m, n), Val::Tuple(args)) = (f, args) else {
            return Err(self.err("REDUCE needs a global and a tuple"));
        };
        match (m.as_str(), n.as_str()) {
            ("collections", "OrderedDict") if args.is_empty() => Ok(Val::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => {
                let ints = |v: &Val| -> Result<Vec<usize>> {
                    match v {
                        Val::Tuple(xs) => xs
                            .iter()
                            .map(|x| match x {
                                Val::Int(i) => {
                                    usize::try_from(*i).map_err(|_| self.err("negative size"))
                                }
                                _ => Err(self.err("size/stride element is not an int")),
                            })
                            .collect(),
                        _ => Err(self.err("size/stride is not a tuple")),
                    }
                };
                match args.as_slice() {
                    [
                        Val::Storage(s),
                        Val::Int(off),
                        size,
                        stride,
                        Val::False,
                        Val::OrderedDict,
                    ] => Ok(Val::Tensor(TensorRef {
                        storage: s.clone(),
                        offset: usize::try_from(*off).map_err(|_| self.err("negative offset"))?,
                        shape: ints(size)?,
                        stride: ints(stride)?,
                    })),
                    _ => Err(self.err("unexpected _rebuild_tensor_v2 arguments")),
                }
            }
            _ => Err(self.err(format!("call of unsupported global {m}.{n}"))),
        }
    }
}

/// Runs `data.pkl` and returns (name, tensor) pairs in file order.
fn unpickle(b: &[u8]) -> Result<Vec<(String, TensorRef)>> {
    let mut vm = Vm {
        b,
        pos: 0,
        op_at: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        vm.op_at = vm.pos;
        let op = vm.take(1)?[0];
        match op {
            0x80 => {
                let proto = vm.take(1)?[0];
                if proto > 5 {
                    return Err(vm.err(format!("pickle protocol {proto}")));
                }
            }
            b'}' => vm.stack.push(Val::Dict(Vec::new())),
            b')' => vm.stack.push(Val::Tuple(Vec::new())),
            b'(' => vm.stack.push(Val::Mark),
            b't' => {
                let items = vm.pop_mark()?;
                vm.stack.push(Val::Tuple(items));
            }
            0x85 => {
                let a = vm.pop()?;
                vm.stack.push(Val::Tuple(vec![a]));
            }
            0x87 => {
                let c = vm.pop()?;
                let bb = vm.pop()?;
                let a = vm.pop()?;
                vm.stack.push(Val::Tuple(vec![a, bb, c]));
            }
            b'X' => {
                let n = u32::from_le_bytes(vm.take_arr::<4>()?) as usize;
                let s = vm.take(n)?;
                let s = std::str::from_utf8(s).map_err(|_| vm.err("BINUNICODE is not UTF-8"))?;
                vm.stack.push(Val::Str(s.to_string()));
            }
            b'J' => {
                let v = i32::from_le_bytes(vm.take_arr::<4>()?);
                vm.stack.push(Val::Int(i64::from(v)));
            }
            b'K' => {
                let v = vm.take(1)?[0];
                vm.stack.push(Val::Int(i64::from(v)));
            }
            b'M' => {
                let v = u16::from_le_bytes(vm.take_arr::<2>()?);
                vm.stack.push(Val::Int(i64::from(v)));
            }
            0x89 => vm.stack.push(Val::False),
            b'c' => {
                let m = vm.line()?;
                let n = vm.line()?;
                let known = matches!(
                    (m.as_str(), n.as_str()),
                    ("torch._utils", "_rebuild_tensor_v2")
                        | ("torch", "FloatStorage")
                        | ("torch", "LongStorage")
                        | ("collections", "OrderedDict")
                );
                if !known {
                    return Err(vm.err(format!("unsupported global {m}.{n}")));
                }
                vm.stack.push(Val::Global(m, n));
            }
            b'q' => {
                let i = vm.take(1)?[0];
                vm.put(u32::from(i))?;
            }
            b'r' => {
                let i = u32::from_le_bytes(vm.take_arr::<4>()?);
                vm.put(i)?;
            }
            b'h' => {
                let i = vm.take(1)?[0];
                vm.get(u32::from(i))?;
            }
            b'Q' => {
                let pid = vm.pop()?;
                let v = vm.persistent_load(pid)?;
                vm.stack.push(v);
            }
            b'R' => {
                let args = vm.pop()?;
                let f = vm.pop()?;
                let v = vm.reduce(f, args)?;
                vm.stack.push(v);
            }
            b'u' => {
                let items = vm.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(vm.err("SETITEMS with an odd number of items"));
                }
                let Some(Val::Dict(d)) = vm.stack.last_mut() else {
                    return Err(vm.err("SETITEMS target is not a dict"));
                };
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            b'.' => break,
            opcode => {
                return Err(CheckpointError::UnsupportedOpcode {
                    offset: vm.op_at,
                    opcode,
                });
            }
        }
    }
    let top = vm.pop()?;
    let Val::Dict(items) = top else {
        return Err(vm.err("top-level object is not a dict"));
    };
    items
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Val::Str(k), Val::Tensor(t)) => Ok((k, t)),
            (k, _) => Err(vm.err(format!("entry {k:?} is not a name -> tensor pair"))),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_opcode_and_globals() {
        // PROTO 2, then LONG_BINGET (not in the supported subset)
        let e = unpickle(b"\x80\x02j\x00\x00\x00\x00.").unwrap_err();
        assert!(
            matches!(e, CheckpointError::UnsupportedOpcode { opcode: b'j', .. }),
            "{e}"
        );
        let e = unpickle(b"\x80\x02cos\nsystem\n.").unwrap_err();
        assert!(
            e.to_string().contains("unsupported global os.system"),
            "{e}"
        );
        assert!(unpickle(b"\x80\x02").is_err());
        assert!(unpickle(b"\x80\x02}.").unwrap().is_empty());
    }

    #[test]
    fn rejects_non_zip() {
        assert!(parse_zip(b"not a zip file at all, just bytes....").is_err());
        assert!(parse_zip(b"").is_err());
    }
}
