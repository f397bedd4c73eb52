//! WaveNet-style conditioner of a WaveGlow coupling layer ("WN"): dilated convolutions over
//! the samples, gated activations, residual and skip connections, every layer conditioned on
//! the upsampled mel spectrogram, with a hand-written backward pass.
//!
//! For signals `x` (`in_channels × length` per row) and conditioning `c` (`cond_channels ×
//! length` per row):
//!
//! ```text
//! h₀ = start(x)                                       1×1, in → C
//! zᵢ = dilatedᵢ(hᵢ) + condᵢ(c)                        k taps at dilation 2ⁱ, C → 2C; 1×1, cond → 2C
//! aᵢ = tanh(zᵢ[..C]) · sigmoid(zᵢ[C..])
//! rᵢ = res_skipᵢ(aᵢ)                                  1×1, C → 2C (C for the last layer)
//! hᵢ₊₁ = hᵢ + rᵢ[..C];  skip += rᵢ[C..]  (the last layer's whole rᵢ goes to skip)
//! out = end(skip)                                     1×1, C → out, zero-initialised
//! ```
//!
//! The end convolution starts at zero, so a coupling layer built on this network starts as the
//! identity.

use crate::engine::{conv1d_backward, conv1d_forward, gated, gated_backward, Conv1dShape, Rng};

/// The network's sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WaveNetShape {
    /// Channels of the signal it reads.
    pub in_channels: usize,
    /// Channels of the conditioning (mel bands, upsampled to the signal's length).
    pub cond_channels: usize,
    /// Hidden channels `C`.
    pub channels: usize,
    /// Dilated layers (dilations 1, 2, 4, …).
    pub layers: usize,
    /// Taps of the dilated convolutions (odd).
    pub kernel: usize,
    /// Channels of the output.
    pub out_channels: usize,
}

/// One convolution's place in the flat parameter vector.
#[derive(Clone, Copy, Debug)]
struct ConvParams {
    offset: usize,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    dilation: usize,
}

impl ConvParams {
    fn len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel + self.out_channels
    }

    fn shape(&self, batch: usize, length: usize) -> Conv1dShape {
        Conv1dShape {
            batch,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            length,
            kernel: self.kernel,
            dilation: self.dilation,
        }
    }

    /// Weight and bias.
    fn split<'a>(&self, params: &'a [f32]) -> (&'a [f32], &'a [f32]) {
        params[self.offset..self.offset + self.len()].split_at(self.len() - self.out_channels)
    }

    fn forward(&self, params: &[f32], x: &[f32], (batch, length): (usize, usize)) -> Vec<f32> {
        let (w, b) = self.split(params);
        let mut out = vec![0.0; batch * self.out_channels * length];
        conv1d_forward(self.shape(batch, length), x, w, b, &mut out);
        out
    }

    /// Writes the weight and bias gradients into `grads` and returns the input gradient (empty
    /// unless `want_input`).
    fn backward(
        &self,
        params: &[f32],
        x: &[f32],
        g: &[f32],
        grads: &mut [f32],
        want_input: bool,
        (batch, length): (usize, usize),
    ) -> Vec<f32> {
        let (w, _) = self.split(params);
        let (gx, gw, gb) = conv1d_backward(self.shape(batch, length), x, w, g, want_input);
        let dst = &mut grads[self.offset..self.offset + self.len()];
        dst[..gw.len()].copy_from_slice(&gw);
        dst[gw.len()..].copy_from_slice(&gb);
        gx
    }
}

/// The WaveNet conditioner.
#[derive(Clone, Debug)]
pub struct WaveNet {
    shape: WaveNetShape,
    params: Vec<f32>,
    start: ConvParams,
    /// Absent without conditioning.
    cond: Option<ConvParams>,
    dilated: Vec<ConvParams>,
    res_skip: Vec<ConvParams>,
    end: ConvParams,
}

/// What [`WaveNet::forward_cached`] keeps for the backward pass.
#[derive(Debug)]
pub struct WaveNetCache {
    batch: usize,
    length: usize,
    x: Vec<f32>,
    c: Vec<f32>,
    /// `hᵢ` for every layer.
    h: Vec<Vec<f32>>,
    /// `aᵢ`, `tanh` and `sigmoid` of every layer's gate.
    acts: Vec<Vec<f32>>,
    tanh: Vec<Vec<f32>>,
    sigmoid: Vec<Vec<f32>>,
    skip: Vec<f32>,
}

impl WaveNet {
    /// A network with PyTorch-style uniform initialisation `U(±1/√fan_in)` and the end
    /// convolution at zero.
    ///
    /// # Panics
    /// If a size is zero or the kernel is even.
    pub fn new(shape: WaveNetShape, rng: &mut Rng) -> Self {
        let s = shape;
        assert!(s.in_channels > 0 && s.channels > 0 && s.layers > 0 && s.out_channels > 0, "sizes must be positive");
        assert!(s.kernel % 2 == 1, "the dilated convolutions need an odd kernel");
        let mut offset = 0;
        let mut conv = |in_channels, out_channels, kernel, dilation| {
            let c = ConvParams { offset, in_channels, out_channels, kernel, dilation };
            offset += c.len();
            c
        };
        let start = conv(s.in_channels, s.channels, 1, 1);
        let cond = (s.cond_channels > 0).then(|| conv(s.cond_channels, 2 * s.channels * s.layers, 1, 1));
        let mut dilated = Vec::with_capacity(s.layers);
        let mut res_skip = Vec::with_capacity(s.layers);
        for i in 0..s.layers {
            dilated.push(conv(s.channels, 2 * s.channels, s.kernel, 1 << i));
            res_skip.push(conv(s.channels, if i + 1 < s.layers { 2 * s.channels } else { s.channels }, 1, 1));
        }
        let end = conv(s.channels, s.out_channels, 1, 1);
        let mut params = vec![0.0; offset];
        for c in [Some(start), cond].iter().flatten().chain(&dilated).chain(&res_skip) {
            let bound = 1.0 / ((c.in_channels * c.kernel) as f64).sqrt();
            for p in &mut params[c.offset..c.offset + c.len()] {
                *p = ((rng.uniform() * 2.0 - 1.0) * bound) as f32;
            }
        }
        Self { shape, params, start, cond, dilated, res_skip, end }
    }

    /// The sizes.
    pub fn shape(&self) -> WaveNetShape {
        self.shape
    }

    /// The flat parameter vector.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The flat parameter vector, mutable.
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// The output for `batch` signals of `length` samples: `x` is `batch × in_channels ×
    /// length`, `c` is `batch × cond_channels × length` (empty without conditioning).
    pub fn forward(&self, x: &[f32], c: &[f32], batch: usize, length: usize) -> Vec<f32> {
        self.forward_cached(x, c, batch, length).0
    }

    /// The output and the cache of [`WaveNet::backward`].
    ///
    /// # Panics
    /// If `x` or `c` does not match the sizes.
    pub fn forward_cached(&self, x: &[f32], c: &[f32], batch: usize, length: usize) -> (Vec<f32>, WaveNetCache) {
        let s = self.shape;
        let (ch, n) = (s.channels, batch * s.channels * length);
        assert_eq!(x.len(), batch * s.in_channels * length, "signal size");
        assert_eq!(c.len(), batch * s.cond_channels * length, "conditioning size");
        let (p, dims) = (&self.params, (batch, length));
        let conds = self.cond.map(|cond| cond.forward(p, c, dims));
        let mut h = vec![self.start.forward(p, x, dims)];
        let (mut acts, mut tanh, mut sigmoid) = (Vec::new(), Vec::new(), Vec::new());
        let mut skip = vec![0.0; n];
        let per = ch * length;
        for i in 0..s.layers {
            let mut z = self.dilated[i].forward(p, &h[i], dims);
            if let Some(conds) = &conds {
                for b in 0..batch {
                    let from = &conds[(b * s.layers + i) * 2 * per..][..2 * per];
                    z[b * 2 * per..][..2 * per].iter_mut().zip(from).for_each(|(z, c)| *z += c);
                }
            }
            let (mut a, mut t, mut sg) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            for b in 0..batch {
                let (za, zb) = z[b * 2 * per..][..2 * per].split_at(per);
                let r = b * per..(b + 1) * per;
                gated(&mut a[r.clone()], za, zb, Some((&mut t[r.clone()], &mut sg[r])));
            }
            let r = self.res_skip[i].forward(p, &a, dims);
            if i + 1 < s.layers {
                let mut next = h[i].clone();
                for b in 0..batch {
                    let (res, sk) = r[b * 2 * per..][..2 * per].split_at(per);
                    next[b * per..][..per].iter_mut().zip(res).for_each(|(h, r)| *h += r);
                    skip[b * per..][..per].iter_mut().zip(sk).for_each(|(s, r)| *s += r);
                }
                h.push(next);
            } else {
                skip.iter_mut().zip(&r).for_each(|(s, r)| *s += r);
            }
            acts.push(a);
            tanh.push(t);
            sigmoid.push(sg);
        }
        let out = self.end.forward(p, &skip, dims);
        (out, WaveNetCache { batch, length, x: x.to_vec(), c: c.to_vec(), h, acts, tanh, sigmoid, skip })
    }

    /// Backward pass: writes the parameter gradients into `grads` (same layout as the
    /// parameters, overwritten) and returns the gradient with respect to the signal `x`.
    pub fn backward(&self, cache: &WaveNetCache, grad_out: &[f32], grads: &mut [f32]) -> Vec<f32> {
        let s = self.shape;
        let (batch, length, p) = (cache.batch, cache.length, &self.params);
        let dims = (batch, length);
        let per = s.channels * length;
        let g_skip = self.end.backward(p, &cache.skip, grad_out, grads, true, dims);
        // The conditioning's gradient, only when there is a conditioning convolution to train.
        let mut g_conds = if self.cond.is_some() { vec![0.0; batch * s.layers * 2 * per] } else { Vec::new() };
        // The gradient reaching hᵢ₊₁ from the layers above (zero above the last).
        let mut g_h = vec![0.0; batch * per];
        for i in (0..s.layers).rev() {
            let g_r = if i + 1 < s.layers {
                let mut g = vec![0.0; batch * 2 * per];
                for b in 0..batch {
                    let (res, sk) = g[b * 2 * per..][..2 * per].split_at_mut(per);
                    res.copy_from_slice(&g_h[b * per..][..per]);
                    sk.copy_from_slice(&g_skip[b * per..][..per]);
                }
                g
            } else {
                g_skip.clone()
            };
            let g_a = self.res_skip[i].backward(p, &cache.acts[i], &g_r, grads, true, dims);
            let mut g_z = vec![0.0; batch * 2 * per];
            for b in 0..batch {
                let (ga, gb) = g_z[b * 2 * per..][..2 * per].split_at_mut(per);
                let r = b * per..(b + 1) * per;
                gated_backward(ga, gb, &g_a[r.clone()], &cache.tanh[i][r.clone()], &cache.sigmoid[i][r]);
                if !g_conds.is_empty() {
                    g_conds[(b * s.layers + i) * 2 * per..][..2 * per].copy_from_slice(&g_z[b * 2 * per..][..2 * per]);
                }
            }
            let g_hi = self.dilated[i].backward(p, &cache.h[i], &g_z, grads, true, dims);
            // hᵢ₊₁ = hᵢ + …: the residual passes g_h down unchanged.
            g_h.iter_mut().zip(&g_hi).for_each(|(g, d)| *g += d);
        }
        if let Some(cond) = self.cond {
            cond.backward(p, &cache.c, &g_conds, grads, false, dims);
        }
        self.start.backward(p, &cache.x, &g_h, grads, true, dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// A network with every parameter random (the end convolution too, so that gradients reach
    /// every layer).
    fn net(cond_channels: usize, rng: &mut Rng) -> WaveNet {
        let shape = WaveNetShape { in_channels: 2, cond_channels, channels: 3, layers: 3, kernel: 3, out_channels: 4 };
        let mut net = WaveNet::new(shape, rng);
        let n = net.params().len();
        net.params_mut().copy_from_slice(&(0..n).map(|_| 0.4 * rng.normal() as f32).collect::<Vec<_>>());
        net
    }

    #[test]
    fn starts_at_zero_and_its_gradients_match_finite_differences() {
        let mut rng = Rng::new(11);
        let shape = WaveNetShape { in_channels: 2, cond_channels: 3, channels: 4, layers: 2, kernel: 3, out_channels: 4 };
        let fresh = WaveNet::new(shape, &mut rng);
        let (x, c) = (random(2 * 2 * 9, &mut rng), random(2 * 3 * 9, &mut rng));
        assert!(fresh.forward(&x, &c, 2, 9).iter().all(|&v| v == 0.0), "the end convolution starts at zero");

        for cond_channels in [3, 0] {
            let mut net = net(cond_channels, &mut rng);
            let (batch, length) = (2, 9);
            let x = random(batch * 2 * length, &mut rng);
            let c = random(batch * cond_channels * length, &mut rng);
            let r = random(batch * 4 * length, &mut rng);
            let loss = |net: &WaveNet, x: &[f32]| -> f64 {
                net.forward(x, &c, batch, length).iter().zip(&r).map(|(o, r)| f64::from(*o) * f64::from(*r)).sum()
            };
            let (_, cache) = net.forward_cached(&x, &c, batch, length);
            let mut grads = vec![f32::NAN; net.params().len()];
            let gx = net.backward(&cache, &r, &mut grads);
            let h = 1e-2f32;
            for i in 0..x.len() {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += h;
                down[i] -= h;
                let d = (loss(&net, &up) - loss(&net, &down)) / (2.0 * f64::from(h));
                assert!((f64::from(gx[i]) - d).abs() < 2e-2 * (1.0 + d.abs()), "input {i}: {} vs {d}", gx[i]);
            }
            for i in (0..grads.len()).step_by(3) {
                let keep = net.params()[i];
                net.params_mut()[i] = keep + h;
                let up = loss(&net, &x);
                net.params_mut()[i] = keep - h;
                let down = loss(&net, &x);
                net.params_mut()[i] = keep;
                let d = (up - down) / (2.0 * f64::from(h));
                assert!(
                    (f64::from(grads[i]) - d).abs() < 2e-2 * (1.0 + d.abs()),
                    "cond {cond_channels}, parameter {i}: {} vs {d}",
                    grads[i]
                );
            }
        }
    }
}
