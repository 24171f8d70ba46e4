//! Convolutional networks on channels-last (NHWC) feature maps, where every convolution is one
//! matrix product: a 1x1 convolution multiplies the map as it lies, `(pixels, c_in)`, and a k x k
//! one gathers each output pixel's k·k·c_in inputs (im2col, in tiles) first. Bias and activation
//! (and a residual) are the product's epilogue. Depthwise convolutions (ConvNeXt) have a direct
//! kernel that runs along the contiguous channel axis. Tested against candle's NCHW `conv2d`.

use candle_core::{Result, Tensor};

use super::kernels::{self, Act, Dense};

/// A batch of feature maps, channels last: `data[((b * h + y) * w + x) * c + channel]`.
#[derive(Debug, Clone)]
pub struct Nhwc {
    pub data: Vec<f32>,
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Nhwc {
    /// From a `(batch, channels, h, w)` tensor.
    pub fn from_nchw(t: &Tensor) -> Result<Self> {
        let (b, c, h, w) = t.dims4()?;
        let src = kernels::to_vec(t)?;
        let hw = h * w;
        let mut data = kernels::alloc(b * hw * c);
        kernels::par_chunks(&mut data, hw * c, |i, dst| {
            let img = &src[i * c * hw..(i + 1) * c * hw];
            for (ch, plane) in img.chunks(hw).enumerate() {
                for (p, v) in plane.iter().enumerate() {
                    dst[p * c + ch] = *v;
                }
            }
        });
        Ok(Self { data, b, h, w, c })
    }

    /// Back to a `(batch, channels, h, w)` tensor.
    pub fn to_nchw(&self) -> Result<Tensor> {
        kernels::tensor(self.data.clone(), &[self.b, self.h, self.w, self.c])?.permute((0, 3, 1, 2))?.contiguous()
    }

    pub fn pixels(&self) -> usize {
        self.b * self.h * self.w
    }

    /// Mean over the spatial axes: `(batch, channels)` row-major.
    pub fn global_mean(&self) -> Vec<f32> {
        let (hw, c) = (self.h * self.w, self.c);
        let mut out = vec![0f32; self.b * c];
        kernels::par_chunks(&mut out, c, |b, row| {
            for p in 0..hw {
                let src = &self.data[(b * hw + p) * c..(b * hw + p + 1) * c];
                row.iter_mut().zip(src).for_each(|(o, v)| *o += *v);
            }
            let inv = 1.0 / hw as f32;
            row.iter_mut().for_each(|o| *o *= inv);
        });
        out
    }

    /// Max pooling, `k x k` windows with `stride` and `pad` (padding never wins, as in PyTorch).
    pub fn max_pool(&self, k: usize, stride: usize, pad: usize) -> Nhwc {
        let oh = (self.h + 2 * pad - k) / stride + 1;
        let ow = (self.w + 2 * pad - k) / stride + 1;
        let c = self.c;
        let mut out = kernels::alloc(self.b * oh * ow * c);
        out.fill(f32::NEG_INFINITY);
        // Several output rows per task: thin maps have short rows.
        let rows_per_task = (16 * 1024usize).div_ceil(ow * c).max(1);
        kernels::par_chunks(&mut out, rows_per_task * ow * c, |ti, block| {
            for (r, orow) in block.chunks_mut(ow * c).enumerate() {
                let row_idx = ti * rows_per_task + r;
                let (b, oy) = (row_idx / oh, row_idx % oh);
                for ox in 0..ow {
                    let dst = &mut orow[ox * c..(ox + 1) * c];
                    for ky in 0..k {
                        let iy = (oy * stride + ky) as isize - pad as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        for kx in 0..k {
                            let ix = (ox * stride + kx) as isize - pad as isize;
                            if ix < 0 || ix >= self.w as isize {
                                continue;
                            }
                            let s = ((b * self.h + iy as usize) * self.w + ix as usize) * c;
                            dst.iter_mut().zip(&self.data[s..s + c]).for_each(|(d, v)| *d = d.max(*v));
                        }
                    }
                }
            }
        });
        Nhwc { data: out, b: self.b, h: oh, w: ow, c }
    }
}

/// A dense (groups = 1) 2-D convolution with a square kernel, as a matrix product over NHWC maps.
pub struct Conv {
    /// Weight `(c_out, k * k * c_in)`, each row in `(ky, kx, c_in)` order.
    dense: Dense,
    k: usize,
    stride: usize,
    pad: usize,
    c_in: usize,
}

impl Conv {
    /// From weight `(c_out, c_in, k, k)` and optional bias `(c_out,)`.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>, stride: usize, pad: usize) -> Result<Self> {
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        if kh != kw || stride == 0 {
            candle_core::bail!("only square kernels with a positive stride are supported ({kh}x{kw}, stride {stride})");
        }
        let w = weight.permute((0, 2, 3, 1))?.contiguous()?.reshape((c_out, kh * kw * c_in))?;
        Ok(Self { dense: Dense::from_tensors(&w, bias)?, k: kh, stride, pad, c_in })
    }

    pub fn from_conv2d(conv: &candle_nn::Conv2d) -> Result<Self> {
        let cfg = conv.config();
        if cfg.groups != 1 || cfg.dilation != 1 {
            candle_core::bail!("grouped or dilated convolutions take another kernel");
        }
        Self::new(conv.weight(), conv.bias(), cfg.stride, cfg.padding)
    }

    pub fn out_channels(&self) -> usize {
        self.dense.outputs
    }

    /// The output size, or an error when the padded input is smaller than the kernel (a
    /// configuration whose images are too small for its stages).
    fn out_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (ph, pw) = (h + 2 * self.pad, w + 2 * self.pad);
        if ph < self.k || pw < self.k {
            candle_core::bail!(
                "a {h}x{w} feature map is too small for a {k}x{k} convolution (padding {p}): the input images are too small for this model",
                k = self.k,
                p = self.pad
            );
        }
        Ok(((ph - self.k) / self.stride + 1, (pw - self.k) / self.stride + 1))
    }

    /// `act(conv(x) + bias (+ residual))`; `residual` is an NHWC map of the output's shape.
    pub fn forward(&self, x: &Nhwc, act: Act, residual: Option<&[f32]>) -> Result<Nhwc> {
        if x.c != self.c_in {
            candle_core::bail!("convolution expects {} input channels, got {}", self.c_in, x.c);
        }
        let (oh, ow) = self.out_size(x.h, x.w)?;
        let rows = x.b * oh * ow;
        let n = self.dense.outputs;
        let data = if self.k == 1 && self.stride == 1 && self.pad == 0 {
            self.dense.forward_with(&x.data, act, residual)
        } else {
            self.dense.forward_gathered(rows, act, residual, |start, cols| self.im2col(x, oh, ow, start, cols))
        };
        Ok(Nhwc { data, b: x.b, h: oh, w: ow, c: n })
    }

    /// Gathers output pixels `start..start + cols.len() / (k·k·c_in)` into rows of `cols`.
    fn im2col(&self, x: &Nhwc, oh: usize, ow: usize, start: usize, cols: &mut [f32]) {
        let (k, c) = (self.k, self.c_in);
        let kk = k * k * c;
        // Output coordinates, advanced incrementally (no divisions per pixel).
        let (mut b, rem) = (start / (oh * ow), start % (oh * ow));
        let (mut oy, mut ox) = (rem / ow, rem % ow);
        for row in cols.chunks_mut(kk) {
            let x0 = (ox * self.stride) as isize - self.pad as isize;
            let inside_x = x0 >= 0 && x0 as usize + k <= x.w;
            for ky in 0..k {
                let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                let dst = &mut row[ky * k * c..(ky + 1) * k * c];
                if iy < 0 || iy >= x.h as isize {
                    dst.fill(0.0);
                    continue;
                }
                let line = (b * x.h + iy as usize) * x.w;
                if inside_x {
                    // The whole window row is inside: one contiguous copy.
                    let s = (line + x0 as usize) * c;
                    copy_small(dst, &x.data[s..s + k * c]);
                } else {
                    for kx in 0..k {
                        let ix = x0 + kx as isize;
                        let d = &mut dst[kx * c..(kx + 1) * c];
                        if ix < 0 || ix >= x.w as isize {
                            d.fill(0.0);
                        } else {
                            let s = (line + ix as usize) * c;
                            copy_small(d, &x.data[s..s + c]);
                        }
                    }
                }
            }
            ox += 1;
            if ox == ow {
                ox = 0;
                oy += 1;
                if oy == oh {
                    oy = 0;
                    b += 1;
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` without a `memcpy` call for the few-element copies of thin maps.
#[inline(always)]
fn copy_small(dst: &mut [f32], src: &[f32]) {
    if dst.len() > 32 {
        dst.copy_from_slice(src);
        return;
    }
    let (mut d, mut s) = (dst, src);
    while d.len() >= 8 {
        d[..8].copy_from_slice(&s[..8]);
        (d, s) = (&mut d[8..], &s[8..]);
    }
    if d.len() >= 4 {
        d[..4].copy_from_slice(&s[..4]);
        (d, s) = (&mut d[4..], &s[4..]);
    }
    for (a, v) in d.iter_mut().zip(s) {
        *a = *v;
    }
}

/// A depthwise convolution (groups = channels), square odd kernel, stride 1, "same" padding (the
/// output has the input's size, so any map size works), computed directly along the channel axis.
pub struct DepthwiseConv {
    /// `(k, k, c)`: the taps of every channel side by side.
    weight: Vec<f32>,
    bias: Vec<f32>,
    k: usize,
    pad: usize,
    c: usize,
}

impl DepthwiseConv {
    pub fn from_conv2d(conv: &candle_nn::Conv2d) -> Result<Self> {
        let cfg = conv.config();
        let (c, one, kh, kw) = conv.weight().dims4()?;
        if one != 1 || cfg.groups != c || kh != kw || cfg.stride != 1 || cfg.dilation != 1 || 2 * cfg.padding + 1 != kh
        {
            candle_core::bail!("not a stride-1 depthwise convolution with 'same' padding");
        }
        let weight = kernels::to_vec(&conv.weight().reshape((c, kh * kw))?.t()?.contiguous()?)?;
        let bias = match conv.bias() {
            Some(b) => kernels::to_vec(b)?,
            None => vec![0.0; c],
        };
        Ok(Self { weight, bias, k: kh, pad: cfg.padding, c })
    }

    pub fn forward(&self, x: &Nhwc) -> Nhwc {
        assert_eq!(x.c, self.c, "depthwise convolution channels");
        let (k, c, pad) = (self.k, self.c, self.pad);
        let oh = x.h + 2 * pad - k + 1;
        let ow = x.w + 2 * pad - k + 1;
        let mut out = kernels::alloc(x.b * oh * ow * c);
        // Several output rows per task: late stages have short rows.
        let rows_per_task = (8 * 1024usize).div_ceil(ow * c).max(1);
        kernels::par_chunks(&mut out, rows_per_task * ow * c, |ti, block| {
            for (r, orow) in block.chunks_mut(ow * c).enumerate() {
                self.row(x, ti * rows_per_task + r, orow);
            }
        });
        Nhwc { data: out, b: x.b, h: oh, w: ow, c }
    }

    /// Output row `row_idx` (over batch and height) into `orow`.
    fn row(&self, x: &Nhwc, row_idx: usize, orow: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if kernels::simd::has_avx2() {
            // SAFETY: has_avx2 checked AVX2 and FMA at run time, all row_avx2 enables.
            return unsafe { self.row_avx2(x, row_idx, orow) };
        }
        self.row_body::<false>(x, row_idx, orow)
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_avx2(&self, x: &Nhwc, row_idx: usize, orow: &mut [f32]) {
        self.row_body::<true>(x, row_idx, orow)
    }

    /// Channels in blocks of `B` whose sums stay in registers across all k·k taps.
    #[inline(always)]
    fn row_body<const F: bool>(&self, x: &Nhwc, row_idx: usize, orow: &mut [f32]) {
        const B: usize = 16;
        let (k, c, pad) = (self.k, self.c, self.pad);
        let oh = x.h + 2 * pad - k + 1;
        let (b, oy) = (row_idx / oh, row_idx % oh);
        let ky0 = pad.saturating_sub(oy);
        let ky1 = k.min(x.h + pad - oy);
        for (ox, out) in orow.chunks_mut(c).enumerate() {
            let kx0 = pad.saturating_sub(ox);
            let kx1 = k.min(x.w + pad - ox);
            let mut c0 = 0;
            while c0 < c {
                let width = B.min(c - c0);
                let mut acc = [0f32; B];
                acc[..width].copy_from_slice(&self.bias[c0..c0 + width]);
                for ky in ky0..ky1 {
                    let iy = oy + ky - pad;
                    for kx in kx0..kx1 {
                        let ix = ox + kx - pad;
                        let s = ((b * x.h + iy) * x.w + ix) * c + c0;
                        let t = (ky * k + kx) * c + c0;
                        let (xs, ws) = (&x.data[s..s + width], &self.weight[t..t + width]);
                        if width == B {
                            for i in 0..B {
                                acc[i] = kernels::simd::ma::<F>(xs[i], ws[i], acc[i]);
                            }
                        } else {
                            for i in 0..width {
                                acc[i] = kernels::simd::ma::<F>(xs[i], ws[i], acc[i]);
                            }
                        }
                    }
                }
                out[c0..c0 + width].copy_from_slice(&acc[..width]);
                c0 += width;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        crate::model::kernels::random_tensor(shape, seed, 1.0)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn convolutions_match_candle() {
        // (batch, c_in, h, w, c_out, k, stride, pad)
        let cases = [
            (1, 3, 17, 15, 8, 7, 2, 3),
            (2, 16, 9, 9, 12, 3, 1, 1),
            (2, 16, 9, 9, 12, 3, 2, 1),
            (1, 24, 8, 8, 20, 1, 1, 0),
            (3, 24, 7, 7, 20, 1, 2, 0),
            (2, 3, 16, 16, 10, 4, 4, 0),
            (1, 5, 4, 4, 6, 3, 1, 1),
            // Few output pixels, many channels: split by output channels.
            (1, 16, 3, 3, 300, 3, 1, 1),
            // Many pixels: each thread gathers several tiles of its own rows.
            (1, 16, 64, 64, 8, 3, 1, 1),
        ];
        for (i, &(b, ci, h, w, co, k, s, p)) in cases.iter().enumerate() {
            let x = rand(&[b, ci, h, w], i as u64);
            let wt = rand(&[co, ci, k, k], 100 + i as u64);
            let bias = rand(&[co], 200 + i as u64);
            let cfg = candle_nn::Conv2dConfig { padding: p, stride: s, ..Default::default() };
            let conv = candle_nn::Conv2d::new(wt, Some(bias), cfg);
            let want = conv.forward(&x).unwrap();
            let fast = Conv::from_conv2d(&conv).unwrap();
            let got = fast.forward(&Nhwc::from_nchw(&x).unwrap(), Act::None, None).unwrap().to_nchw().unwrap();
            assert!(max_diff(&got, &want) < 1e-4, "case {i}");
            // ReLU with a residual.
            let r = rand(want.dims(), 300 + i as u64);
            let want = (want + &r).unwrap().relu().unwrap();
            let rn = Nhwc::from_nchw(&r).unwrap();
            let got =
                fast.forward(&Nhwc::from_nchw(&x).unwrap(), Act::Relu, Some(&rn.data)).unwrap().to_nchw().unwrap();
            assert!(max_diff(&got, &want) < 1e-4, "case {i} with residual");
        }
    }

    #[test]
    fn maps_smaller_than_the_kernel_are_errors() {
        let conv = Conv::new(&rand(&[6, 3, 4, 4], 1), None, 4, 0).unwrap();
        let small = Nhwc::from_nchw(&rand(&[1, 3, 2, 3], 2)).unwrap();
        let err = conv.forward(&small, Act::None, None).unwrap_err().to_string();
        assert!(err.contains("2x3 feature map is too small for a 4x4 convolution"), "{err}");
        let wrong_channels = Nhwc::from_nchw(&rand(&[1, 5, 8, 8], 3)).unwrap();
        assert!(conv.forward(&wrong_channels, Act::None, None).is_err());
        // Depthwise convolutions must keep the map size.
        let cfg = candle_nn::Conv2dConfig { padding: 1, groups: 4, ..Default::default() };
        let dw = candle_nn::Conv2d::new(rand(&[4, 1, 7, 7], 4), None, cfg);
        assert!(DepthwiseConv::from_conv2d(&dw).is_err());
    }

    #[test]
    fn depthwise_matches_candle() {
        // Channel counts below, at and past the 16-wide blocks.
        for (b, c, h, w, k, p) in [(2, 8, 9, 11, 7, 3), (1, 5, 4, 4, 3, 1), (2, 40, 8, 7, 7, 3), (1, 16, 3, 3, 7, 3)] {
            let x = rand(&[b, c, h, w], 1);
            let wt = rand(&[c, 1, k, k], 2);
            let bias = rand(&[c], 3);
            let cfg = candle_nn::Conv2dConfig { padding: p, groups: c, ..Default::default() };
            let conv = candle_nn::Conv2d::new(wt, Some(bias), cfg);
            let want = conv.forward(&x).unwrap();
            let got =
                DepthwiseConv::from_conv2d(&conv).unwrap().forward(&Nhwc::from_nchw(&x).unwrap()).to_nchw().unwrap();
            assert!(max_diff(&got, &want) < 1e-5);
        }
    }

    #[test]
    fn pooling_matches_candle() {
        let x = rand(&[2, 6, 9, 8], 4);
        let want =
            x.pad_with_same(2, 1, 1).unwrap().pad_with_same(3, 1, 1).unwrap().max_pool2d_with_stride(3, 2).unwrap();
        let got = Nhwc::from_nchw(&x).unwrap().max_pool(3, 2, 1).to_nchw().unwrap();
        assert_eq!(max_diff(&got, &want), 0.0);
        let want = x.max_pool2d(2).unwrap();
        let got = Nhwc::from_nchw(&x).unwrap().max_pool(2, 2, 0).to_nchw().unwrap();
        assert_eq!(max_diff(&got, &want), 0.0);
        let want = x.mean(3).unwrap().mean(2).unwrap();
        let got = Tensor::from_vec(Nhwc::from_nchw(&x).unwrap().global_mean(), (2, 6), &Device::Cpu).unwrap();
        assert!(max_diff(&got, &want) < 1e-6);
    }
}
