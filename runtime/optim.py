"""The optimizers MemoryX runs: torch.optim's SGD and AdamW, in numpy, chunk by chunk (docs/training.md).

The update of one parameter is elementwise, so it can run on any slice of the flat tensor, as the slice's
gradient arrives, on arrays that are memory-mapped views of the store:

    opt = AdamW(lr=1e-3)
    state = opt.init_state("fc.weight", (256, 784))          # {"exp_avg": zeros, "exp_avg_sq": zeros}
    opt.step_chunk(param[a:b], grad[a:b], {k: s[a:b] for k, s in state.items()}, step=1)

``step`` is the number of the update this tensor is taking (torch's ``state["step"]`` after its increment:
1 for the first). Everything is float32 in place; ``grad`` is not written.

The arithmetic follows torch's single-tensor (``foreach=False``) implementations in ``torch/optim/sgd.py``
(``_single_tensor_sgd``) and ``torch/optim/adam.py`` (``_single_tensor_adam``, which AdamW calls with
``decoupled_weight_decay=True``) operation by operation, with each op rounded the way torch's CPU kernel
rounds it: scalars are cast to float32 first (``alpha.to<float>()``), ``add(x, alpha=a)``, ``lerp`` and
``addcmul`` are fused multiply-adds (``vec::fmadd`` in ATen's vectorized kernels; GCC contracts the scalar
tail loops the same way), ``addcdiv`` and division by a scalar are not (a true division, no reciprocal).
numpy has no fma, so ``_fma`` computes it exactly: the float32 product is exact in float64, the float64 sum
is rounded to odd, and one rounding to float32 then gives the correctly rounded fma. The result is torch's
bit for bit on CPUs where torch runs its AVX2/AVX-512 kernels (tests/training/test_optim.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from wafercc.ir import WaferError

F32 = np.float32


class OptimizerConfigError(WaferError):
    """An optimizer configuration torch.optim would reject (a negative learning rate, a beta outside [0, 1),
    nesterov without momentum, ...), or one that is not an optimizer wafercc knows."""


# -- exact float32 arithmetic in numpy ------------------------------------------------------------


def _fma(a, b, c, out: np.ndarray | None = None) -> np.ndarray:
    """fma(a, b, c) = a*b + c rounded once to float32, for float32 arrays or scalars (float32 values); into
    ``out`` (a float32 array of the result's shape, which may be ``c`` itself) when given.

    a*b is exact in float64 (24 + 24 bits < 53), so s = a*b + c in float64 has one rounding, and rounding
    s to float32 gives the correctly rounded result unless s landed exactly on a float32 midpoint (its low
    29 fraction bits 1000...0) or in float32's subnormal range. Only there is the exact error computed
    (TwoSum) and s rounded to odd, after which the rounding to float32 is that of the exact value
    (round-to-odd with 53 >= 24 + 2 bits). An s of zero is exact (a float64 sum that underflows is exact,
    Hauser's theorem), so zeros, common in the state of parameters without gradient, skip that check."""
    s = np.empty(np.broadcast_shapes(np.shape(a), np.shape(b), np.shape(c)), np.float64)
    np.multiply(a, b, out=s, dtype=np.float64)
    np.add(s, c, out=s, dtype=np.float64)
    flat = s.reshape(-1)
    bits = flat.view(np.int64)
    t = np.bitwise_and(bits, _LOW29)
    risky = np.equal(t, _MID29)
    np.bitwise_and(bits, _ABS63, out=t)  # |s|'s bits: 0 < |s| < 2**-125 is 0 <= bits - 1 < TINY's bits - 1
    np.subtract(t, 1, out=t)
    risky |= np.less(t.view(np.uint64), _TINY_BITS_1)
    if risky.any():
        idx = np.flatnonzero(risky)
        pi = np.multiply(_at(a, s.shape, idx), _at(b, s.shape, idx), dtype=np.float64)
        ci = _at(c, s.shape, idx).astype(np.float64)
        si = flat[idx]
        bb = si - pi
        e = (pi - (si - bb)) + (ci - bb)
        fix = (e != 0) & ((si.view(np.int64) & 1) == 0) & np.isfinite(si)
        si[fix] = np.nextafter(si[fix], np.where(e[fix] > 0, np.inf, -np.inf))
        flat[idx] = si
    with np.errstate(over="ignore"):  # beyond float32's range: infinity, as the hardware fma gives
        if out is None:
            return s.astype(F32)
        np.copyto(out, s, casting="same_kind")
        return out


def _at(x, shape, idx: np.ndarray) -> np.ndarray:
    """Elements ``idx`` (flat, row-major) of ``x`` broadcast to ``shape`` (a scalar stays a scalar)."""
    a = np.asarray(x)
    if a.ndim == 0:
        return a
    if a.shape == shape:
        return a.reshape(-1)[idx]
    return np.broadcast_to(a, shape).reshape(-1)[idx]


_LOW29 = np.int64((1 << 29) - 1)
_MID29 = np.int64(1 << 28)
_ABS63 = np.int64((1 << 63) - 1)
_TINY_BITS_1 = np.uint64(np.array(2.0**-125).view(np.int64) - 1)


def _sqrt(x: np.ndarray) -> np.ndarray:
    """float32 square root, correctly rounded (IEEE). torch's CPU ``sqrt`` is not: it is 1 ulp off in
    about 0.7% of elements (torch 2.13, AVX-512 build), the one place AdamW here differs from torch
    (tests swap this function for torch's to show the rest is bit for bit)."""
    return np.sqrt(x)


def _f32(x: float) -> np.float32:
    """A Python scalar as torch's CPU kernels see it: cast to float32 once."""
    return F32(x)


def _lerp(start: np.ndarray, end: np.ndarray, weight: np.float32, out: np.ndarray | None = None) -> np.ndarray:
    """torch.lerp(start, end, weight) on CPU (aten/src/ATen/native/cpu/LerpKernel.cpp, lerp_vec):
    |w| < 0.5: fma(w, end - start, start); else fma(w - 1, end - start, end). ``out`` may be ``start``."""
    diff = end - start
    if abs(weight) < 0.5:
        return _fma(weight, diff, start, out)
    return _fma(weight - F32(1), diff, end, out)


# Elements updated per pass of an optimizer: the float64 temporaries of ``_fma`` (128 KiB) stay in the core's
# cache. Measured on a 1 MiB store chunk at once, ``_fma`` ran at ~10 ns per element, at 16Ki ~3 ns.
BLOCK = 1 << 14


def _blocks(*arrays: np.ndarray):
    """Matching pieces of arrays of one shape, BLOCK elements at a time (flat, row-major) where every one is
    contiguous; the arrays whole otherwise. Each piece is a view: writing it writes the array."""
    if all(a.flags.c_contiguous for a in arrays):
        flats = [a.reshape(-1) for a in arrays]
        for lo in range(0, max(flats[0].size, 1), BLOCK):
            yield [f[lo : lo + BLOCK] for f in flats]
    else:
        yield list(arrays)


# -- the optimizers -------------------------------------------------------------------------------


def _number(opt: str, name: str, v, lo: float = 0.0, hi: float | None = None, hi_open: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise OptimizerConfigError(f"{opt}: {name} must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f) or f < lo or (hi is not None and (f >= hi if hi_open else f > hi)):
        bound = f">= {lo:g}" if hi is None else f"in [{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise OptimizerConfigError(f"{opt}: {name} must be a finite number {bound}, got {v!r}")
    return f


def _flag(opt: str, name: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise OptimizerConfigError(f"{opt}: {name} must be true or false, got {v!r}")
    return bool(v)


@dataclass(frozen=True)
class SGD:
    """torch.optim.SGD(lr, momentum, dampening, weight_decay, nesterov, maximize).

    Per element, with g the gradient, p the parameter, b the momentum buffer, t the step:
        g = -g if maximize;  g = g + wd*p;  b = g (t == 1) else m*b + (1 - dampening)*g
        g = g + m*b (nesterov) else b;  p = p - lr*g
    """

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    maximize: bool = False

    kind = "SGD"

    def __post_init__(self):
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            object.__setattr__(self, name, _number("SGD", name, getattr(self, name)))
        for name in ("nesterov", "maximize"):
            object.__setattr__(self, name, _flag("SGD", name, getattr(self, name)))
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise OptimizerConfigError(
                "SGD: nesterov momentum needs momentum > 0 and dampening = 0 "
                f"(got momentum={self.momentum:g}, dampening={self.dampening:g})"
            )

    def state_names(self) -> tuple[str, ...]:
        """The per-parameter float32 tensors (each the parameter's shape) this optimizer keeps."""
        return ("momentum_buffer",) if self.momentum != 0 else ()

    def init_state(self, name: str, shape) -> dict[str, np.ndarray]:
        """Zero state for parameter ``name``; ``step_chunk`` at step 1 fills the momentum buffer with the
        gradient, as torch's does when it creates the buffer."""
        return {k: np.zeros(shape, F32) for k in self.state_names()}

    def step_chunk(self, param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], step: int) -> None:
        """One update of a slice of a parameter, in place (``param`` and ``state``'s arrays are written)."""
        _check_chunk(param, grad, state, self.state_names(), step)
        names = self.state_names()
        for p, grad_b, *st in _blocks(param, grad, *(state[k] for k in names)):
            self._block(p, grad_b, dict(zip(names, st)), step)

    def _block(self, param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], step: int) -> None:
        g = np.negative(grad) if self.maximize else grad
        if self.weight_decay != 0:
            g = _fma(param, _f32(self.weight_decay), g)  # grad.add(param, alpha=weight_decay)
        if self.momentum != 0:
            buf = state["momentum_buffer"]
            if step == 1:
                buf[...] = g  # buf = torch.clone(grad).detach()
            else:  # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                _fma(g, _f32(1 - self.dampening), buf * _f32(self.momentum), out=buf)
            g = _fma(buf, _f32(self.momentum), g) if self.nesterov else buf  # grad.add(buf, alpha=momentum)
        _fma(g, _f32(-self.lr), param, out=param)  # param.add_(grad, alpha=-lr)

    def to_dict(self) -> dict:
        return {"type": self.kind, **asdict(self)}


@dataclass(frozen=True)
class AdamW:
    """torch.optim.AdamW(lr, betas, eps, weight_decay, amsgrad, maximize).

    Per element, at step t:
        p = p * (1 - lr*wd);  m = lerp(m, g, 1 - b1);  v = b2*v + (1 - b2)*g*g;  vmax = max(vmax, v) (amsgrad)
        p = p - (lr / (1 - b1^t)) * m / (sqrt(v or vmax) / sqrt(1 - b2^t) + eps)
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    amsgrad: bool = False
    maximize: bool = False

    kind = "AdamW"

    def __post_init__(self):
        object.__setattr__(self, "lr", _number("AdamW", "lr", self.lr))
        object.__setattr__(self, "eps", _number("AdamW", "eps", self.eps))
        object.__setattr__(self, "weight_decay", _number("AdamW", "weight_decay", self.weight_decay))
        betas = self.betas
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise OptimizerConfigError(f"AdamW: betas must be two numbers (beta1, beta2), got {betas!r}")
        object.__setattr__(
            self, "betas", tuple(_number("AdamW", f"betas[{i}]", b, 0.0, 1.0) for i, b in enumerate(betas))
        )
        for name in ("amsgrad", "maximize"):
            object.__setattr__(self, name, _flag("AdamW", name, getattr(self, name)))

    def state_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if self.amsgrad else ("exp_avg", "exp_avg_sq")

    def init_state(self, name: str, shape) -> dict[str, np.ndarray]:
        return {k: np.zeros(shape, F32) for k in self.state_names()}

    def step_chunk(self, param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], step: int) -> None:
        _check_chunk(param, grad, state, self.state_names(), step)
        lr, (beta1, beta2) = self.lr, self.betas
        t = float(step)  # torch keeps step as a float32 tensor and reads it with .item()
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        consts = (
            _f32(1 - lr * self.weight_decay),
            _f32(1 - beta1),
            _f32(beta2),
            _f32(1 - beta2),
            _f32(bias_correction2_sqrt),
            _f32(self.eps),
            _f32(-step_size),
        )
        names = self.state_names()
        for p, g, *st in _blocks(param, grad, *(state[k] for k in names)):
            self._block(p, g, dict(zip(names, st)), consts)

    def _block(self, param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray], consts: tuple) -> None:
        decay, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size = consts
        g = np.negative(grad) if self.maximize else grad
        if self.weight_decay != 0:
            param *= decay  # param.mul_(1 - lr * weight_decay)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        _lerp(exp_avg, g, one_minus_beta1, out=exp_avg)  # exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq *= beta2  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        _fma(one_minus_beta2 * g, g, exp_avg_sq, out=exp_avg_sq)
        if self.amsgrad:
            vmax = state["max_exp_avg_sq"]
            np.maximum(vmax, exp_avg_sq, out=vmax)
            second = vmax
        else:
            second = exp_avg_sq
        denom = _sqrt(second)
        np.divide(denom, bias_correction2_sqrt, out=denom)
        denom += eps
        # param.addcdiv_(exp_avg, denom, value=-step_size): self + value * t1 / t2, no fma
        update = neg_step_size * exp_avg
        update /= denom
        param += update

    def to_dict(self) -> dict:
        return {
            "type": self.kind,
            **{
                f.name: (list(getattr(self, f.name)) if f.name == "betas" else getattr(self, f.name))
                for f in fields(self)
            },
        }


Optimizer = SGD | AdamW
OPTIMIZERS = {"SGD": SGD, "AdamW": AdamW}


def from_dict(d) -> Optimizer:
    """The optimizer a store's checkpoint names (``to_dict``'s output); OptimizerConfigError otherwise."""
    if not isinstance(d, dict) or d.get("type") not in OPTIMIZERS:
        kind = d.get("type") if isinstance(d, dict) else d
        raise OptimizerConfigError(f"unknown optimizer {kind!r}: wafercc runs {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[d["type"]]
    names = {f.name for f in fields(cls)}
    extra = sorted(set(d) - names - {"type"})
    if extra:
        raise OptimizerConfigError(
            f"{d['type']}: unknown setting{'s' if len(extra) > 1 else ''} "
            f"{', '.join(extra)} (it takes {', '.join(sorted(names))})"
        )
    args = {k: (tuple(v) if k == "betas" and isinstance(v, list) else v) for k, v in d.items() if k != "type"}
    try:
        return cls(**args)
    except TypeError as e:  # a required setting missing (SGD's lr)
        raise OptimizerConfigError(f"{d['type']}: {e}") from None


def _check_chunk(param, grad, state, names, step) -> None:
    if param.dtype != F32 or grad.dtype != F32:
        raise TypeError(f"step_chunk works on float32 arrays (param {param.dtype}, grad {grad.dtype})")
    if param.shape != grad.shape or any(state[k].shape != param.shape for k in names):
        raise ValueError("step_chunk: param, grad and state slices must have one shape")
    if isinstance(step, bool) or int(step) != step or step < 1:
        raise ValueError(f"step_chunk: step is the update's number, >= 1 (got {step!r})")
