//! Reads the state dicts that `torch.save` writes (the zip format of PyTorch 1.6 and later:
//! `NAME/data.pkl`, a pickle whose tensors point at storages in `NAME/data/KEY`), without
//! Python and without libtorch's unpickler, which cannot rebuild a `collections.OrderedDict` and
//! so refuses every torchvision checkpoint.
//!
//! The pickle is run on a small stack machine that knows the opcodes `torch.save` emits
//! (protocols 2 to 4) and the few callables a state dict needs (`OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`); any other object becomes an opaque
//! value, so a checkpoint that also stores, say, an optimizer state or training arguments still
//! yields its tensors. Nothing in the file is executed.
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
enum Value {
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A persistent id: a storage of `kind` in the archive's `data/KEY`.
    Storage {
        key: String,
    },
    Tensor(TensorRef),
    /// Anything else the pickle builds (booleans, floats, bytes, other objects); kept only so
    /// that the stack stays in step.
    Opaque,
}

#[derive(Debug, Clone)]
struct TensorRef {
    key: String,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

fn ints(v: &Value, what: &str) -> Result<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => Ok(*n),
                other => bail!("{what}: expected an integer, found {other:?}"),
            })
            .collect(),
        other => bail!("{what}: expected a tuple, found {other:?}"),
    }
}

/// Applies a callable to its arguments (the REDUCE and NEWOBJ opcodes).
fn call(func: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &func else {
        return Ok(Value::Opaque);
    };
    let args = match args {
        Value::Tuple(a) => a,
        _ => return Ok(Value::Opaque),
    };
    Ok(match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Value::Dict(Vec::new()),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let [storage, offset, size, stride, ..] = args.as_slice() else {
                bail!("_rebuild_tensor_v2 with {} arguments", args.len());
            };
            let Value::Storage { key } = storage else {
                bail!("a tensor without a storage")
            };
            let Value::Int(offset) = offset else {
                bail!("a tensor offset that is not an integer")
            };
            Value::Tensor(TensorRef {
                key: key.clone(),
                offset: *offset,
                size: ints(size, "tensor size")?,
                stride: ints(stride, "tensor stride")?,
            })
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(Value::None)
        }
        _ => Value::Opaque,
    })
}

/// What one pickle built, where it ended in the input, and the kind of every storage it named.
struct Unpickled {
    value: Value,
    end: usize,
    storages: HashMap<String, Kind>,
}

/// Runs the pickle that starts at `start` in `data`.
fn unpickle(data: &[u8], start: usize) -> Result<Unpickled> {
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let mut storages = HashMap::new();
    let mut pos = start;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= data.len())
            .context("the pickle ends early")?;
        let s = &data[*pos..end];
        *pos = end;
        Ok(s)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let line = |pos: &mut usize| -> Result<String> {
        let rest = &data[*pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .context("the pickle ends inside a name")?;
        *pos += n + 1;
        Ok(String::from_utf8_lossy(&rest[..n]).into_owned())
    };
    macro_rules! pop {
        () => {
            stack.pop().context("the pickle pops an empty stack")?
        };
    }
    macro_rules! pop_mark {
        () => {{
            let m = marks
                .pop()
                .context("the pickle closes a mark it never opened")?;
            if m > stack.len() {
                bail!("the pickle's stack shrank below a mark");
            }
            stack.split_off(m)
        }};
    }
    loop {
        let op = take(&mut pos, 1)?[0];
        match op {
            0x80 => {
                take(&mut pos, 1)?;
            }
            0x95 => {
                take(&mut pos, 8)?;
            }
            b'.' => {
                let value = stack.pop().context("the pickle builds nothing")?;
                return Ok(Unpickled {
                    value,
                    end: pos,
                    storages,
                });
            }
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'N' => stack.push(Value::None),
            0x88 | 0x89 => stack.push(Value::Opaque),
            b'(' => marks.push(stack.len()),
            b'c' => {
                let module = line(&mut pos)?;
                let name = line(&mut pos)?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop!();
                let module = pop!();
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => bail!("STACK_GLOBAL without names"),
                }
            }
            b'R' | 0x81 => {
                let args = pop!();
                let func = pop!();
                stack.push(call(func, args)?);
            }
            b'Q' => {
                let pid = pop!();
                let Value::Tuple(items) = pid else {
                    bail!("a persistent id that is not a tuple")
                };
                match items.as_slice() {
                    [Value::Str(tag), Value::Global(_, ty), Value::Str(key), ..]
                        if tag == "storage" =>
                    {
                        let kind = storage_kind(ty)
                            .with_context(|| format!("unsupported storage type {ty}"))?;
                        storages.insert(key.clone(), kind);
                        stack.push(Value::Storage { key: key.clone() });
                    }
                    _ => bail!("an unknown persistent id"),
                }
            }
            b'q' => {
                let i = take(&mut pos, 1)?[0] as u32;
                memo.insert(i, stack.last().context("BINPUT on an empty stack")?.clone());
            }
            b'r' => {
                let i = u32_at(take(&mut pos, 4)?);
                memo.insert(
                    i,
                    stack
                        .last()
                        .context("LONG_BINPUT on an empty stack")?
                        .clone(),
                );
            }
            0x94 => {
                let i = memo.len() as u32;
                memo.insert(
                    i,
                    stack.last().context("MEMOIZE on an empty stack")?.clone(),
                );
            }
            b'h' | b'j' => {
                let i = if op == b'h' {
                    take(&mut pos, 1)?[0] as u32
                } else {
                    u32_at(take(&mut pos, 4)?)
                };
                stack.push(
                    memo.get(&i)
                        .with_context(|| format!("the pickle reads memo {i} before writing it"))?
                        .clone(),
                );
            }
            b'X' | 0x8c | 0x8d | b'T' | b'U' | b'B' | b'C' => {
                let n = match op {
                    0x8c | b'U' | b'C' => take(&mut pos, 1)?[0] as usize,
                    0x8d => {
                        let b = take(&mut pos, 8)?;
                        usize::try_from(u64::from_le_bytes(b.try_into()?))?
                    }
                    _ => u32_at(take(&mut pos, 4)?) as usize,
                };
                let bytes = take(&mut pos, n)?;
                stack.push(match op {
                    b'B' | b'C' => Value::Opaque,
                    _ => Value::Str(String::from_utf8_lossy(bytes).into_owned()),
                });
            }
            b'K' => stack.push(Value::Int(take(&mut pos, 1)?[0] as i64)),
            b'M' => {
                let b = take(&mut pos, 2)?;
                stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
            }
            b'J' => stack.push(Value::Int(u32_at(take(&mut pos, 4)?) as i32 as i64)),
            0x8a => {
                let n = take(&mut pos, 1)?[0] as usize;
                let b = take(&mut pos, n)?;
                if n > 8 {
                    // The legacy format's magic number; no size or offset is this long.
                    stack.push(Value::Opaque);
                    continue;
                }
                let mut v: i64 = 0;
                for (i, &byte) in b.iter().enumerate() {
                    v |= (byte as i64) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'G' => {
                take(&mut pos, 8)?;
                stack.push(Value::Opaque);
            }
            b't' => {
                let items = pop_mark!();
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    bail!("the pickle pops an empty stack");
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'a' => {
                let v = pop!();
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.push(v);
                }
            }
            b'e' => {
                let items = pop_mark!();
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.extend(items);
                }
            }
            b's' => {
                let v = pop!();
                let k = pop!();
                if let Some(Value::Dict(d)) = stack.last_mut() {
                    d.push((k, v));
                }
            }
            b'u' => {
                let items = pop_mark!();
                if let Some(Value::Dict(d)) = stack.last_mut() {
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
            }
            b'b' => {
                // BUILD sets an object's state (a state dict's `_metadata`): not needed here.
                pop!();
            }
            b'0' => {
                pop!();
            }
            b'1' => {
                let _ = pop_mark!();
            }
            b'2' => stack.push(stack.last().context("DUP on an empty stack")?.clone()),
            other => bail!(
                "unsupported pickle opcode 0x{other:02x} at byte {}",
                pos - 1
            ),
        }
    }
}

/// The state dict in a checkpoint object: the object itself, or the dict under a usual key
/// (`state_dict`, `model`, `model_state`, `module`) when it wraps one.
fn state_dict(v: Value) -> Result<Vec<(String, TensorRef)>> {
    let Value::Dict(items) = v else {
        bail!("the checkpoint holds no dict of tensors")
    };
    let mut tensors = Vec::new();
    let mut nested = None;
    for (k, v) in items {
        match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => tensors.push((k, t)),
            (Value::Str(k), d @ Value::Dict(_))
                if ["state_dict", "model", "model_state", "module"].contains(&k.as_str()) =>
            {
                nested.get_or_insert(d);
            }
            _ => {}
        }
    }
    match (tensors.is_empty(), nested) {
        (true, Some(d)) => state_dict(d),
        (true, None) => bail!("the checkpoint holds no tensors"),
        _ => Ok(tensors),
    }
}

/// Every tensor of the state dict in a checkpoint `torch.save` wrote, by name, in its own kind:
/// the zip format, or the legacy format of PyTorch before 1.6 (still that of many published
/// weights: four pickles, a list of storage keys, then each storage as a count and raw bytes).
pub fn read(file: &Path) -> Result<HashMap<String, Tensor>> {
    read_bytes(&std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?)
}

/// [`read`] on a checkpoint's bytes.
pub fn read_bytes(data: &[u8]) -> Result<HashMap<String, Tensor>> {
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let refs = if data.starts_with(b"PK\x03\x04") {
        let mut zip =
            zip::ZipArchive::new(std::io::Cursor::new(data)).context("not a zip archive")?;
        let pkl = zip
            .file_names()
            .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
            .context("no data.pkl: not a torch.save checkpoint")?
            .to_string();
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        let mut pickle = Vec::new();
        zip.by_name(&pkl)?.take(1 << 30).read_to_end(&mut pickle)?;
        let object = unpickle(&pickle, 0).context("cannot read the checkpoint's data.pkl")?;
        for (key, kind) in object.storages {
            let entry = zip
                .by_name(&format!("{prefix}data/{key}"))
                .with_context(|| format!("storage {key} is missing"))?;
            // The entry's declared size is not trusted for the allocation; the bytes read are.
            let mut bytes = Vec::new();
            entry
                .take(data.len() as u64 * 1032)
                .read_to_end(&mut bytes)?;
            storages.insert(key, storage(&bytes, kind)?);
        }
        state_dict(object.value)?
    } else {
        let mut pos = 0;
        // Magic number, protocol version, system information.
        for _ in 0..3 {
            pos = unpickle(&data, pos)
                .context("not a PyTorch checkpoint")?
                .end;
        }
        let object = unpickle(&data, pos).context("cannot read the checkpoint's object")?;
        let list =
            unpickle(&data, object.end).context("cannot read the checkpoint's storage list")?;
        let Value::List(keys) = list.value else {
            bail!("the checkpoint's storage list is not a list")
        };
        pos = list.end;
        for key in keys {
            let Value::Str(key) = key else {
                bail!("a storage key that is not a string")
            };
            let kind = *object
                .storages
                .get(&key)
                .with_context(|| format!("storage {key} is never used"))?;
            let count = data
                .get(pos..pos + 8)
                .context("the checkpoint ends inside a storage")?;
            let count = usize::try_from(i64::from_le_bytes(count.try_into()?))
                .context("a negative storage size")?;
            let len = count
                .checked_mul(kind.elt_size_in_bytes())
                .context("a storage too large")?;
            let end = (pos + 8).checked_add(len).filter(|&e| e <= data.len());
            let end = end.context("the checkpoint ends inside a storage")?;
            storages.insert(key, storage(&data[pos + 8..end], kind)?);
            pos = end;
        }
        state_dict(object.value)?
    };
    let mut out = HashMap::new();
    for (name, t) in refs {
        let storage = storages
            .get(&t.key)
            .with_context(|| format!("storage {} of '{name}' is missing", t.key))?;
        let numel = storage.size()[0];
        if t.size.len() != t.stride.len()
            || t.size.iter().chain(&t.stride).any(|&d| d < 0)
            || t.offset < 0
        {
            bail!(
                "'{name}' has an invalid shape {:?} / stride {:?}",
                t.size,
                t.stride
            );
        }
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .map(|(&s, &st)| (s - 1).max(0).saturating_mul(st))
            .fold(t.offset, i64::saturating_add);
        if t.size.iter().all(|&s| s > 0) && last >= numel {
            bail!("'{name}' reaches past its storage ({last} >= {numel} elements)");
        }
        let tensor = storage
            .f_as_strided(t.size.as_slice(), t.stride.as_slice(), t.offset)?
            .f_contiguous()?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// A one-dimensional tensor over a storage's little-endian bytes.
fn storage(bytes: &[u8], kind: Kind) -> Result<Tensor> {
    let elem = kind.elt_size_in_bytes();
    let n = bytes.len() / elem;
    Ok(Tensor::f_from_data_size(
        &bytes[..n * elem],
        &[n as i64],
        kind,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `OrderedDict(a=arange(6).reshape(2, 3), b=ones(3, half), c=tensor(3), d=a[1])`, saved by
    /// torch 2.13 in both formats (the fuzzing seeds).
    const SEEDS: [&[u8]; 2] = [
        include_bytes!("../../fuzz/seeds/checkpoint/zip.pth"),
        include_bytes!("../../fuzz/seeds/checkpoint/legacy.pth"),
    ];

    #[test]
    fn reads_both_formats_with_views_and_kinds() {
        for bytes in SEEDS {
            let t = read_bytes(bytes).unwrap();
            assert_eq!(t.len(), 4);
            assert_eq!(t["a"].size(), [2, 3]);
            assert_eq!(
                Vec::<f32>::try_from(t["a"].flatten(0, -1)).unwrap(),
                [0., 1., 2., 3., 4., 5.]
            );
            assert_eq!(t["b"].kind(), Kind::Half);
            assert_eq!(t["c"].kind(), Kind::Int64);
            assert_eq!(t["c"].int64_value(&[]), 3);
            // A view into a's storage at offset 3.
            assert_eq!(Vec::<f32>::try_from(&t["d"]).unwrap(), [3., 4., 5.]);
        }
    }

    #[test]
    fn damaged_checkpoints_are_errors_not_panics() {
        for bytes in SEEDS {
            for cut in (0..bytes.len()).step_by(7) {
                assert!(read_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        let mut flipped = SEEDS[1].to_vec();
        for i in (0..flipped.len()).step_by(3) {
            flipped[i] ^= 0x5a;
            let _ = read_bytes(&flipped);
            flipped[i] ^= 0x5a;
        }
    }
}
