//! Checkpoint weights: memory-mapped safetensors (sharded too) or PyTorch pickles read without
//! executing anything (candle's pickle reader only interprets the tensor-rebuild opcodes).
//! Files are validated when opened so that truncated or random files get a clear message.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::{kernels, ModelError};
use crate::source::{ModelFiles, WeightsFormat};

/// Opened weights and what we know about them.
pub struct Weights {
    builder: VarBuilder<'static>,
    /// The safetensors mapping itself, for layers that read their weights straight from it.
    mapped: Option<std::sync::Arc<candle_core::safetensors::MmapedSafetensors>>,
    /// Tensor name → (element count, dtype).
    tensors: BTreeMap<String, (u64, DType)>,
}

impl Weights {
    pub fn open(files: &ModelFiles, device: &Device) -> Result<Self, ModelError> {
        let first = files.weights.first().cloned().unwrap_or_else(|| files.root.clone());
        let mut tensors = BTreeMap::new();
        let mut mapped = None;
        let backend: Box<dyn SimpleBackend> = match files.weights_format {
            WeightsFormat::Safetensors => {
                for path in &files.weights {
                    check_safetensors_header(path)?;
                }
                // SAFETY: the mapping is read-only and lives only while the model loads: every
                // tensor is copied out of it (`CopiedOut`) and `Weights` is dropped at the end of
                // `model::load`. What no program can rule out is another process truncating or
                // rewriting the file during those seconds; we accept that, as every mmap user does.
                let mmaped = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files.weights) }
                    .map_err(|e| ModelError::Weights { path: first.clone(), reason: describe(&e) })?;
                for (name, view) in mmaped.tensors() {
                    let count = view.shape().iter().map(|&d| d as u64).product();
                    let dtype = DType::try_from(view.dtype()).unwrap_or(DType::F32);
                    tensors.insert(name, (count, dtype));
                }
                let mmaped = std::sync::Arc::new(mmaped);
                mapped = Some(mmaped.clone());
                Box::new(CopiedOut(mmaped))
            }
            WeightsFormat::PyTorch => {
                if files.weights.len() != 1 {
                    return Err(ModelError::Weights {
                        path: first,
                        reason: "sharded PyTorch checkpoints are not supported; convert to safetensors".into(),
                    });
                }
                let pth = candle_core::pickle::PthTensors::new(&first, None).map_err(|e| ModelError::Weights {
                    path: first.clone(),
                    reason: format!("not a readable PyTorch checkpoint: {}", describe(&e)),
                })?;
                for (name, info) in pth.tensor_infos() {
                    tensors.insert(name.clone(), (info.layout.shape().elem_count() as u64, info.dtype));
                }
                Box::new(pth)
            }
        };
        if tensors.is_empty() {
            return Err(ModelError::Weights { path: first, reason: "the file holds no tensors".into() });
        }
        let mut builder = VarBuilder::from_backend(backend, DType::F32, device.clone());
        // Old BERT checkpoints name layer norms gamma/beta.
        if tensors.keys().any(|k| k.ends_with("LayerNorm.gamma")) {
            builder = builder.rename_f(|name: &str| {
                name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            });
        }
        Ok(Self { builder, mapped, tensors })
    }

    /// Runs `build` with [`read_mapped`] able to read this checkpoint's tensors in place.
    pub fn with_mapped<R>(&self, build: impl FnOnce() -> R) -> R {
        struct Reset(Option<std::sync::Arc<candle_core::safetensors::MmapedSafetensors>>);
        impl Drop for Reset {
            fn drop(&mut self) {
                MAPPED.with(|m| *m.borrow_mut() = self.0.take());
            }
        }
        let previous = MAPPED.with(|m| std::mem::replace(&mut *m.borrow_mut(), self.mapped.clone()));
        let _reset = Reset(previous);
        build()
    }

    pub fn builder(&self) -> VarBuilder<'static> {
        self.builder.clone()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn parameter_count(&self) -> u64 {
        self.tensors.values().map(|(n, _)| n).sum()
    }

    /// The dtype most parameters are stored in.
    pub fn dtype_name(&self) -> String {
        let mut by_dtype: BTreeMap<String, u64> = BTreeMap::new();
        for (n, dtype) in self.tensors.values() {
            *by_dtype.entry(format!("{dtype:?}").to_lowercase()).or_default() += n;
        }
        by_dtype.into_iter().max_by_key(|(_, n)| *n).map(|(d, _)| d).unwrap_or_default()
    }

    /// A few leading name components, to tell a user what the file actually contains.
    pub fn name_prefixes(&self) -> String {
        let prefixes: BTreeSet<&str> = self.tensors.keys().filter_map(|k| k.split('.').next()).collect();
        let mut list: Vec<&str> = prefixes.into_iter().take(4).collect();
        if list.len() == 4 {
            list[3] = "...";
        }
        list.join(", ")
    }

    /// Wraps a candle error raised while building `architecture` into a message that names the
    /// tensor and says what the file holds.
    pub fn mismatch(&self, architecture: &str, error: candle_core::Error) -> ModelError {
        let reason = match innermost(&error) {
            candle_core::Error::CannotFindTensor { path } => format!(
                "tensor `{path}` is missing (the file's tensors start with: {}); is this checkpoint really a {architecture}?",
                self.name_prefixes()
            ),
            candle_core::Error::UnexpectedShape { msg, expected, got } => {
                format!("{msg}: config.json implies {expected:?} but the file has {got:?}")
            }
            other => other.to_string(),
        };
        ModelError::WeightsMismatch { architecture: architecture.to_string(), reason }
    }
}

/// Memory-mapped safetensors read the way loading needs: each f32 tensor is copied out of the
/// mapping into a huge-page buffer (candle's own reader faults in fresh 4 KiB pages; layers then
/// transpose it into their own buffer), and the file pages it came from are then dropped from this
/// process's resident set (they stay in the page cache), so that loading does not hold the file
/// and the weights copied out of it at once.
struct CopiedOut(std::sync::Arc<candle_core::safetensors::MmapedSafetensors>);

thread_local! {
    /// The mapping of the model being built on this thread ([`Weights::with_mapped`]).
    static MAPPED: std::cell::RefCell<Option<std::sync::Arc<candle_core::safetensors::MmapedSafetensors>>> =
        const { std::cell::RefCell::new(None) };
}

/// Calls `read` with tensor `name` as f32 values read in place from the file mapping of the model
/// being built, when it is stored as f32 with the given shape and the mapping holds it 4-byte
/// aligned (safetensors writers align tensor data); `None` otherwise, and the caller loads it the
/// usual way (a copy). The pages read are dropped from the resident set afterwards.
pub(crate) fn read_mapped<R>(name: &str, shape: &[usize], read: impl FnOnce(&[f32]) -> R) -> Option<R> {
    MAPPED.with(|m| {
        let mapped = m.borrow();
        let view = mapped.as_ref()?.get(name).ok()?;
        let f32_stored = DType::try_from(view.dtype()).ok() == Some(DType::F32);
        if !f32_stored || view.shape() != shape || !cfg!(target_endian = "little") {
            return None;
        }
        let bytes = view.data();
        // SAFETY: f32 has no invalid bit patterns; align_to only reinterprets the aligned middle of
        // the byte slice, and the check below takes it only when there is no unaligned head or
        // tail, i.e. when it covers all the bytes.
        let (head, values, tail) = unsafe { bytes.align_to::<f32>() };
        if !head.is_empty() || !tail.is_empty() {
            return None;
        }
        let out = read(values);
        release_file_pages(bytes);
        Some(out)
    })
}

impl SimpleBackend for CopiedOut {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, device)?;
        if tensor.shape() != &shape {
            Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: shape,
                got: tensor.shape().clone(),
            }
            .bt())?
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        use candle_core::safetensors::Load;
        let view = self.0.get(name)?;
        let bytes = view.data();
        let tensor = if DType::try_from(view.dtype()).ok() == Some(DType::F32) && device.is_cpu() {
            let mut data = kernels::alloc_zeroed_huge(bytes.len() / 4);
            // In 2 MiB pieces on all threads: faulting in fresh pages is most of the cost.
            const PIECE: usize = 1 << 19;
            data.par_chunks_mut(PIECE).zip(bytes.par_chunks(4 * PIECE)).for_each(|(d, b)| {
                if cfg!(target_endian = "little") {
                    // SAFETY: this copies 4 * d.len() bytes, and `b` holds at least that many:
                    // chunk i of `b` has min(4 * PIECE, bytes.len() - 4 * PIECE * i) bytes, chunk i of
                    // `d` min(PIECE, bytes.len() / 4 - PIECE * i) f32s. The destination is written
                    // through `d`'s own pointer (so f32 alignment is not needed on the source side),
                    // any bit pattern is a valid f32, and the file mapping and the fresh `data`
                    // vector cannot overlap.
                    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), d.as_mut_ptr().cast::<u8>(), d.len() * 4) };
                } else {
                    for (v, le) in d.iter_mut().zip(b.chunks_exact(4)) {
                        *v = f32::from_le_bytes([le[0], le[1], le[2], le[3]]);
                    }
                }
            });
            Tensor::from_vec(data, view.shape(), device)?
        } else {
            view.load(device)?
        };
        release_file_pages(bytes);
        tensor.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.get(name).is_ok()
    }
}

/// Drops the whole pages of a read-only file mapping from the resident set; reading them again
/// faults them back in from the page cache, unchanged.
#[cfg(target_os = "linux")]
fn release_file_pages(bytes: &[u8]) {
    // SAFETY: sysconf only reads a system constant; it has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: start..end are whole pages inside `bytes`, which is a live tensor of a
        // read-only shared file mapping (only `CopiedOut`'s mapping calls this). MADV_DONTNEED on
        // such pages only drops them from this process's page tables: the next read faults the same
        // bytes back in from the page cache, so the `&[u8]` borrowers see no change.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn release_file_pages(_: &[u8]) {}

/// The error under candle's backtrace and path wrappers.
fn innermost(error: &candle_core::Error) -> &candle_core::Error {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => innermost(inner),
        candle_core::Error::WithPath { inner, .. } => innermost(inner),
        candle_core::Error::Context { inner, .. } => innermost(inner),
        other => other,
    }
}

/// A candle error without its backtrace noise.
pub(crate) fn describe(error: &candle_core::Error) -> String {
    innermost(error).to_string()
}

/// Checks a safetensors header before mapping the file: an 8-byte little-endian length, a JSON
/// header of that length, and data offsets that fit the file.
fn check_safetensors_header(path: &PathBuf) -> Result<(), ModelError> {
    use std::io::Read;
    let error = |reason: String| ModelError::Weights { path: path.clone(), reason };
    let mut file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let file_len = file.metadata().map_err(|e| error(e.to_string()))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| error(format!("not a safetensors file: only {file_len} bytes long")))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len == 0 || header_len > 100 * 1024 * 1024 || 8 + header_len > file_len {
        return Err(error(format!(
            "not a safetensors file, or truncated: its header claims {header_len} bytes but the file has {file_len}"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| error(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| error(format!("not a safetensors file: its header is not JSON ({e})")))?;
    let data_len = file_len - 8 - header_len;
    let end = json
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.as_array()?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if end > data_len {
        return Err(error(format!(
            "truncated: tensors need {end} bytes of data but the file holds {data_len} (re-download it)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::safetensors::MmapedSafetensors;
    use candle_nn::Init;

    #[test]
    fn layers_read_f32_weights_in_place_while_their_model_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let weight = Tensor::arange(0f32, 12f32, &Device::Cpu).unwrap().reshape((3, 4)).unwrap();
        let bias = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let tensors = std::collections::HashMap::from([
            ("layer.weight".to_string(), weight.clone()),
            ("layer.bias".to_string(), bias),
            ("half".to_string(), weight.to_dtype(DType::F16).unwrap()),
        ]);
        candle_core::safetensors::save(&tensors, &path).unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let source = crate::source::ModelSource::Local { path: dir.path().to_path_buf() };
        let files = crate::source::resolve(&source, &Default::default()).unwrap();
        let weights = Weights::open(&files, &Device::Cpu).unwrap();
        let want: Vec<f32> = (0..12).map(|v| v as f32).collect();
        // Outside a build nothing is mapped: callers load the usual way.
        assert_eq!(read_mapped("layer.weight", &[3, 4], |w| w.to_vec()), None);
        let copied = kernels::Dense::load(&weights.builder().pp("layer"), 4, 3, true).unwrap();
        let mapped = weights.with_mapped(|| {
            assert_eq!(read_mapped("layer.weight", &[3, 4], |w| w.to_vec()), Some(want.clone()));
            // Another shape, another dtype or another name: not read in place.
            assert_eq!(read_mapped("layer.weight", &[4, 3], |w| w.to_vec()), None);
            assert_eq!(read_mapped("half", &[3, 4], |w| w.to_vec()), None);
            assert_eq!(read_mapped("nope", &[3, 4], |w| w.to_vec()), None);
            kernels::Dense::load(&weights.builder().pp("layer"), 4, 3, true).unwrap()
        });
        assert_eq!(read_mapped("layer.weight", &[3, 4], |w| w.to_vec()), None);
        // The layer read in place is the layer read from a copy: x·Wᵀ + b.
        let x = [1.0f32, 0.0, -1.0, 2.0];
        let out = mapped.forward(&x, kernels::Act::None);
        assert_eq!(out, copied.forward(&x, kernels::Act::None));
        assert_eq!(out, vec![4.0 + 0.5, 12.0 - 1.0, 20.0 + 2.0]);
    }

    #[test]
    fn copied_out_tensors_match_the_file_in_every_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        // Big enough to span whole pages (the released part) and small ones.
        let big = Tensor::arange(0f32, 300_000f32, &Device::Cpu).unwrap().reshape((600, 500)).unwrap();
        let small = Tensor::new(&[1.5f32, -2.25, 3.0], &Device::Cpu).unwrap();
        let half = small.to_dtype(DType::F16).unwrap();
        let tensors = std::collections::HashMap::from([
            ("big".to_string(), big.clone()),
            ("small".to_string(), small.clone()),
            ("half".to_string(), half),
        ]);
        candle_core::safetensors::save(&tensors, &path).unwrap();
        // SAFETY: the test's own temporary file, which nothing changes while it is mapped.
        let backend = CopiedOut(std::sync::Arc::new(unsafe { MmapedSafetensors::new(&path) }.unwrap()));
        let cpu = Device::Cpu;
        let same = |a: &Tensor, b: &Tensor| {
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap() == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        // Twice: the second read comes back after the pages were released.
        for _ in 0..2 {
            let got = backend.get((600, 500).into(), "big", Init::Const(0.0), DType::F32, &cpu).unwrap();
            assert!(same(&got, &big));
        }
        assert!(same(&backend.get_unchecked("small", DType::F32, &cpu).unwrap(), &small));
        assert!(same(&backend.get_unchecked("half", DType::F32, &cpu).unwrap(), &small));
        let err = backend.get((500, 600).into(), "big", Init::Const(0.0), DType::F32, &cpu).unwrap_err();
        assert!(matches!(innermost(&err), candle_core::Error::UnexpectedShape { .. }), "{err}");
        assert!(backend.contains_tensor("half") && !backend.contains_tensor("missing"));
    }
}
