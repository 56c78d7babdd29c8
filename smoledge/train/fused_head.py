"""The LM head and its loss a chunk of positions at a time, so the (B*T, V) logits never exist whole.

    from smoledge.train.fused_head import Head
    head = Head(hidden, model.lm_head, chunk=512, z_weight=1e-4)    # hidden (B, T, C), final-normed
    loss, parts = head.loss(batch.labels, denom)                      # next-token CE (+ z-loss)
    loss, parts = head.loss(batch.labels, denom, alpha=0.5, soft=Soft(target, 1.0, "forward"))  # distillation
    logits = head.logits()                                            # (B, T, V), for what needs them all
    target = Head(teacher_hidden, teacher.lm_head, chunk=512).targets(temperature=1.0, top_k=64)

With SmolLM2's 49,152-token vocabulary the logits of one 8 x 256 batch are 400 MB in fp32, and the plain
loss (losses.logits_loss) adds three or four tensors that size (log-softmax, the gradients of both). Here,
as in Liger-Kernel's fused linear cross-entropy, one autograd Function takes the hidden states and the
head's weight and, per chunk of labelled positions, makes the logits (n, V), the loss and its gradient
w.r.t. those logits in closed form and in place, then the gradients w.r.t. the chunk's hidden rows
(g @ W) and the weight (g^T h, accumulated over chunks), and drops the chunk. Backward only scales those
stored gradients. Positions without a label are skipped: they add nothing to any term.

What is computed is losses.logits_loss's (same terms, ignore_index, denominators, fp32 loss math on the
logits, the matmuls in the autocast dtype); tests/test_chunked_losses.py checks losses and gradients
against it. The top-k distillation term is closed-form too, with the divergence's gradient over its k + 1
bins taken by autograd (a small tensor). A dense target (top_k 0, online only), or a position whose
student tail mass is below 1e-20 of its top probability (the closed form sums exp(u - max) in fp32, which
underflows where the plain path's masked logsumexp stays exact), runs its chunk through logits_loss and
autograd instead: same result, slower.

Measured on the 2-core CPU (AMD EPYC, fp32, 2 threads, load ~1.5), forward + backward of the head and
its loss for 2,048 positions x 512 wide x 49,152, best of 3 (benchmarks/train_vs_hf_trainer.py times
whole training steps):
  next-token CE        whole logits 2.18 s   chunked 1.87 s (1.17x)   checkpointed chunks 3.30 s
  top-64 distill T=1   whole logits 3.72 s   chunked 1.90 s (1.96x)   checkpointed chunks 5.61 s
  top-64 distill T=2   whole logits 3.65 s   chunked 2.07 s (1.76x)   checkpointed chunks 5.37 s
The chunked time is ~90% its three matmuls (n x C x V each). Checkpointed chunks (torch.utils.checkpoint
around logits + logits_loss per chunk) make the logits twice and keep autograd's passes, hence slower than
even the whole logits; autograd inside this Function instead of the closed form was ~1.4x slower (under
load). torch.compile is not used: compiling the CE chunk math took 6 s and the compiled kernel ran a
512-row chunk in 39 ms against 21 ms for the eager in-place ops (it writes a fresh output instead of
reusing the logits buffer), next to ~500 ms of matmuls per chunk; there is nothing left for it to fuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smoledge.train.data import IGNORE_INDEX
from smoledge.train.losses import Soft, divergence, label_denominator, logits_loss, teacher_targets

# Positions per chunk. The (chunk, V) logits buffer is the head's largest tensor (512 x 49,152 fp32: 96 MB),
# and the weight's gradient (V x C) is read and written once per chunk: whole training steps (8 x 256
# positions) took the same time at 512, 1024 and 2048 and 2% longer at 256 on the 2-core CPU.
DEFAULT_CHUNK = 512
# A row's student tail mass (relative to its largest probability) below this goes to the exact path: far
# above fp32's underflow, so the tail sum is never short of a flushed term that matters.
TINY_TAIL = 1e-20


@dataclass
class Head:
    """Final hidden states and the linear head they go through; losses over the vocabulary from them."""

    hidden: torch.Tensor
    """(B, T, C) final (normed) hidden states."""
    linear: nn.Linear
    """The LM head (V x C; tied to the embedding in smoledge's models)."""
    chunk: int = DEFAULT_CHUNK
    """Positions per chunk; 0 makes the whole logits and uses losses.logits_loss (the reference path)."""
    z_weight: float = 0.0
    """Weight of the z-loss added to every loss taken from this head."""

    def logits(self) -> torch.Tensor:
        return self.linear(self.hidden)                                     # (B, T, V)

    def targets(self, temperature: float, top_k: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """losses.teacher_targets(self.logits(), temperature, top_k), a chunk of positions at a time: a
        teacher's head, so no gradients; what is kept per position is k + 1 values (V when dense)."""
        if self.chunk <= 0:
            return teacher_targets(self.logits(), temperature, top_k)
        flat = self.hidden.reshape(-1, self.hidden.shape[-1])               # (N, C)
        pieces = [teacher_targets(self.linear(flat[lo:lo + self.chunk]), temperature, top_k)
                  for lo in range(0, flat.shape[0], self.chunk)]
        lead = self.hidden.shape[:-1]
        ids = None if pieces[0][0] is None else torch.cat([i for i, _ in pieces]).reshape(*lead, -1)  # (B, T, k)
        return ids, torch.cat([p for _, p in pieces]).reshape(*lead, -1)   # (B, T, k + 1) or (B, T, V)

    def loss(self, labels: torch.Tensor, denom: float | torch.Tensor | None = None, alpha: float = 1.0,
             soft: Soft | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """losses.logits_loss(self.logits(), labels, denom, alpha, self.z_weight, soft)."""
        # A biased head would need its bias in every chunk; no smoledge model has one.
        if self.chunk <= 0 or self.linear.bias is not None:
            return logits_loss(self.logits(), labels, denom, alpha, self.z_weight, soft)
        return chunked_loss(self.hidden, self.linear.weight, labels, denom, alpha, self.z_weight, soft, self.chunk)


def chunked_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                 denom: float | torch.Tensor | None = None, alpha: float = 1.0, z_weight: float = 0.0,
                 soft: Soft | None = None, chunk: int = DEFAULT_CHUNK) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """logits_loss(hidden @ weight.T, ...) computed `chunk` labelled positions at a time.
    hidden (B, T, C), weight (V, C), labels (B, T); differentiable w.r.t. hidden and weight."""
    flat = hidden.reshape(-1, hidden.shape[-1])                             # (N, C)
    y = labels.reshape(-1)                                                  # (N,)
    rows = (y != IGNORE_INDEX).nonzero().squeeze(1)                         # (M,)
    d = torch.as_tensor(label_denominator(labels, denom), dtype=torch.float32, device=hidden.device)
    terms = _Terms(y[rows].unsqueeze(1), alpha, z_weight, d, soft, rows, flat.shape[0])
    want_h = torch.is_grad_enabled() and flat.requires_grad
    want_w = torch.is_grad_enabled() and weight.requires_grad
    if want_h or want_w:
        loss, parts = _ChunkedHead.apply(flat, weight, rows, terms, chunk, want_h, want_w)
    else:
        loss, parts, _, _ = _run(flat, weight, rows, terms, chunk, False, False)
    return loss, dict(zip(terms.names, parts.unbind()))


class _ChunkedHead(torch.autograd.Function):
    """Forward makes the loss and both gradients; backward scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, rows, terms, chunk, want_h, want_w):  # type: ignore[override]
        loss, parts, grad_h, grad_w = _run(hidden, weight, rows, terms, chunk, want_h, want_w)
        ctx.grads = (grad_h, grad_w)
        ctx.mark_non_differentiable(parts)
        return loss, parts

    @staticmethod
    def backward(ctx, grad_loss, _grad_parts):  # type: ignore[override]
        if ctx.grads is None:
            raise RuntimeError("the chunked LM-head loss computes its gradients once: backward through it "
                               "twice (retain_graph) is not supported")
        grad_h, grad_w = ctx.grads
        ctx.grads = None  # in-place scaling below: a second backward must not see scaled values
        # The stored gradients are this Function's own tensors, so scaling them in place costs no copy.
        scale = grad_loss.float()
        return (None if grad_h is None else grad_h.mul_(scale.to(grad_h.dtype)),
                None if grad_w is None else grad_w.mul_(scale), None, None, None, None, None)


def _run(hidden: torch.Tensor, weight: torch.Tensor, rows: torch.Tensor, terms: "_Terms", chunk: int,
         want_h: bool, want_w: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(loss, parts (P,), d loss / d hidden (N, C) or None, d loss / d weight (V, C) or None)."""
    device = hidden.device.type
    # The plain path's lm_head runs under the caller's autocast: the matmuls here use the same dtype.
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    grad = want_h or want_w
    sums = torch.zeros(len(terms.names), dtype=torch.float32, device=hidden.device)
    grad_h = torch.zeros_like(hidden) if want_h else None
    # fp32 whatever the weight's dtype: summing bf16 per-chunk products in bf16 would lose their low bits.
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
    scratch = _Scratch(min(chunk, rows.numel()), weight.shape[0], hidden.device)
    with torch.autocast(device, enabled=False):
        w = weight.detach().to(dtype)                                       # (V, C)
        for lo in range(0, rows.numel(), chunk):
            at = slice(lo, lo + chunk)
            idx = rows[at]                                                  # (n,)
            h = hidden.detach().index_select(0, idx).to(dtype)              # (n, C)
            done = terms.closed_form(scratch.logits(h, w), at, grad, scratch)  # logits (n, V) -> gradient
            if done is None:
                done = terms.reference(scratch.logits(h, w), at, grad)
            part, g = done
            sums += part
            if not grad:
                continue
            if dtype != torch.float32:
                g = scratch.get("low", g.shape[0], dtype).copy_(g)           # (n, V)
            if grad_h is not None:
                grad_h.index_copy_(0, idx, (g @ w).to(hidden.dtype))        # (n, C)
            if grad_w is not None:
                if dtype == torch.float32:
                    grad_w.addmm_(g.T, h)                                   # (V, C)
                else:
                    grad_w.add_(g.T @ h)
    if grad_w is not None:
        grad_w = grad_w.to(weight.dtype)
    return terms.total(sums), sums, grad_h, grad_w


class _Scratch:
    """(chunk, V) buffers that every chunk of one call reuses. A fresh 100 MB tensor per chunk pays its page
    faults each time: the logits matmul into a reused buffer took 160 ms instead of 190 ms (512 x 512 x
    49,152 on the 2-core CPU), and the closed-form loss in place 21 ms instead of 140 ms out of place."""

    def __init__(self, rows: int, vocab: int, device: torch.device):
        self.rows, self.vocab, self.device = rows, vocab, device
        self.bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if name not in self.bufs:
            self.bufs[name] = torch.empty(self.rows, self.vocab, dtype=dtype, device=self.device)
        return self.bufs[name][:n]                                          # (n, V)

    def logits(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """h @ w.T as fp32 (n, V), whatever the matmul dtype (the plain loss upcasts the logits too)."""
        n = h.shape[0]
        if h.dtype == torch.float32:
            return torch.mm(h, w.T, out=self.get("logits", n))
        return self.get("logits", n).copy_(torch.mm(h, w.T, out=self.get("low", n, h.dtype)))


def _exp_shifted(buf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In place, buf (n, V) <- exp(buf - its row max); returns (row max, row sum of the result), (n, 1) each."""
    top = buf.amax(1, keepdim=True)
    buf.sub_(top).exp_()
    return top, buf.sum(1, keepdim=True)


class _Terms:
    """The loss terms of the labelled positions (rows), per chunk. Values are sums / denominator."""

    def __init__(self, labels: torch.Tensor, alpha: float, z_weight: float, denom: torch.Tensor,
                 soft: Soft | None, rows: torch.Tensor, n_positions: int):
        self.labels = labels                                                # (M, 1)
        self.alpha, self.z_weight, self.denom, self.soft = alpha, z_weight, denom, soft
        self.names = ["ce"] + (["soft"] if soft is not None else []) + (["z_loss"] if z_weight > 0 else [])
        self.ids = self.logp = None
        if soft is not None:
            ids, logp = soft.target
            self.logp = logp.reshape(n_positions, -1).index_select(0, rows).float()       # (M, k + 1) or (M, V)
            if ids is not None:
                self.ids = ids.reshape(n_positions, -1).index_select(0, rows)           # (M, k)

    def total(self, sums: torch.Tensor) -> torch.Tensor:
        """The weighted loss from the parts, as logits_loss adds them."""
        part = dict(zip(self.names, sums.unbind()))
        loss = self.alpha * part["ce"]
        if self.soft is not None:
            loss = loss + (1.0 - self.alpha) * self.soft.temperature ** 2 * part["soft"]
        if self.z_weight > 0:
            loss = loss + self.z_weight * part["z_loss"]
        return loss

    def _ce(self, lse: torch.Tensor, picked: torch.Tensor) -> list[torch.Tensor]:
        """CE and z-loss sums / denom from the rows' log-partition and their labels' logits, (n, 1) each."""
        out = [(lse - picked).sum() / self.denom]
        return out + [lse.square().sum() / self.denom] if self.z_weight > 0 else out

    def _ce_scale(self, lse: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        """d (alpha CE + z_weight z-loss) / d logits = this (n, 1) x exp(logits - max), minus alpha / denom at
        the label: softmax (p - onehot) for CE, 2 log Z p for the z-loss."""
        return (self.alpha + 2.0 * self.z_weight * lse) / (total * self.denom)

    def _label_grad(self, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return g.scatter_add_(1, y, (-self.alpha / self.denom).expand(y.shape))

    def closed_form(self, z: torch.Tensor, at: slice, grad: bool, scratch: _Scratch
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(part sums (P,), d loss / d z (n, V), made in z's storage); None when this chunk needs the
        reference path (dense target, or a student tail mass too small for the closed form)."""
        y = self.labels[at]                                                 # (n, 1)
        picked = z.gather(1, y)                                             # (n, 1)
        if self.soft is None:
            top, total = _exp_shifted(z)
            lse = top + total.log()                                         # (n, 1)
            if grad:
                self._label_grad(z.mul_(self._ce_scale(lse, total)), y)
            return torch.stack(self._ce(lse, picked)), z
        if self.ids is None:
            return None
        return self._top_k(z, y, picked, at, grad, scratch)

    def _top_k(self, z: torch.Tensor, y: torch.Tensor, picked: torch.Tensor, at: slice, grad: bool,
               scratch: _Scratch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Top-k + tail distillation (losses._student_bins, divergence) with CE and z-loss, in closed form.

        u = z / T; the student's bins are log q at the teacher's k ids and log(tail mass). With g_b the
        divergence's gradient over the k + 1 bins and S its row sum, d D / d u_j is g_b[i] - q_j S at the
        i-th id and q_j (g_b[tail] / q_tail - S) elsewhere."""
        soft = self.soft
        t = soft.temperature
        ids = self.ids[at]                                                  # (n, k)
        shared = t == 1.0  # then the soft term's softmax is the CE's: one exp pass serves both
        u_ids = z.gather(1, ids) / t                                        # (n, k)
        a = z if shared else torch.div(z, t, out=scratch.get("soft", z.shape[0]))  # (n, V)
        top, total = _exp_shifted(a)
        lse_t = top + total.log()                                           # (n, 1)
        e_ids = a.gather(1, ids)                                            # (n, k)
        a.scatter_(1, ids, 0.0)
        tail = a.sum(1, keepdim=True)                                       # (n, 1)
        if bool((tail < TINY_TAIL * total).any()):
            return None
        bins = torch.cat([u_ids - lse_t, tail.log() - total.log()], dim=1)  # (n, k + 1)
        with torch.enable_grad():
            bins.requires_grad_(grad)
            div = divergence(self.logp[at], bins, soft.kind)                # (n,)
            g_b = torch.autograd.grad(div.sum(), bins)[0] if grad else None  # (n, k + 1)
        if grad:
            w = (1.0 - self.alpha) * t / self.denom  # (1 - alpha) T^2 / denom, times du/dz = 1 / T
            s = g_b.sum(1, keepdim=True)                                    # (n, 1)
            on_tail = (g_b[:, -1:] / tail - s / total) * w                  # (n, 1)
            on_ids = (g_b[:, :-1] - e_ids / total * s) * w                  # (n, k)
            if shared:
                ce_scale = self._ce_scale(lse_t, total)
                on_tail, on_ids = on_tail + ce_scale, on_ids + e_ids * ce_scale
            a.mul_(on_tail).scatter_(1, ids, on_ids)
        if shared:
            sums = self._ce(lse_t, picked)
        else:
            z_top, z_total = _exp_shifted(z)
            lse = z_top + z_total.log()                                     # (n, 1)
            sums = self._ce(lse, picked)
            if grad:
                z.mul_(self._ce_scale(lse, z_total)).add_(a)
        if grad:
            self._label_grad(z, y)
        return torch.stack([sums[0], div.detach().sum() / self.denom, *sums[1:]]), z

    def reference(self, z: torch.Tensor, at: slice, grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The chunk through losses.logits_loss, its gradient by autograd: what closed_form must equal."""
        soft = None
        if self.soft is not None:
            ids = None if self.ids is None else self.ids[at]
            soft = Soft((ids, self.logp[at]), self.soft.temperature, self.soft.kind)
        with torch.enable_grad():
            z.requires_grad_(grad)
            loss, parts = logits_loss(z.unsqueeze(0), self.labels[at].T, self.denom, self.alpha, self.z_weight, soft)
            g = torch.autograd.grad(loss, z)[0] if grad else None                # (n, V)
        return torch.stack([parts[n] for n in self.names]), g
