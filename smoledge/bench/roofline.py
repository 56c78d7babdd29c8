"""The memory-bandwidth bound on decode speed, and how close a measured tg run came to it. Torch-free.

    from smoledge.bench.roofline import decode_roofline
    r = decode_roofline(weight_bytes=115_599_104, kv_bytes_per_position=46_080, n_start=1, n_gen=128,
                        bandwidth_gbs=25.6, achieved_tokens_per_s=61.2)
    print(r["bound_tokens_per_s"], r["fraction"])

Decoding one token at batch 1 reads every weight once (a matrix-vector product per layer) plus the K
and V of every position in the cache, and does about two flops per weight byte: far below what a CPU
computes per byte of DRAM bandwidth, so memory bandwidth sets the ceiling:

    bytes/token = weight bytes + KV bytes per position x mean positions attended in the run
    bound       = bandwidth / (bytes/token)            tokens/s
    fraction    = achieved tokens/s / bound

Weight bytes come from the artifact itself, so a model smoledge did not train has a bound too (GGUF: the
file's tensor table, smoledge.bench.gguf_info; ONNX: the graph and weight files). The token-embedding
lookup reads one row, not the table: a GGUF with its own output tensor counts that one row, while with
tied embeddings the output layer reads the whole table anyway; an untied ONNX graph's embedding table
is counted in full, so its bound is a little low. The cache: a tg<n> run starts from n_start cached
tokens; decode step j (1..n) attends to n_start + j positions (the cache plus itself), so the mean is
n_start + (n + 1) / 2.
Caches smaller than the CPU's last-level cache are not DRAM traffic: for tiny models the bound is far
above what per-token overheads allow, and the fraction is small.
"""

from __future__ import annotations

from typing import Any


def mean_context(n_start: int, n_gen: int) -> float:
    """Mean positions each decode step of a tg run attends to (its cache plus itself)."""
    return n_start + (n_gen + 1) / 2


def decode_roofline(weight_bytes: int, kv_bytes_per_position: int, n_start: int, n_gen: int,
                    bandwidth_gbs: float, achieved_tokens_per_s: float) -> dict[str, Any]:
    """Bytes read per decoded token, the bandwidth bound and the fraction achieved (None without a bandwidth)."""
    ctx = mean_context(n_start, n_gen)
    kv_read = kv_bytes_per_position * ctx
    per_token = weight_bytes + kv_read
    bound = bandwidth_gbs * 1e9 / per_token if bandwidth_gbs > 0 else None
    return {
        "weight_bytes": int(weight_bytes),
        "kv_bytes_per_position": int(kv_bytes_per_position),
        "mean_context": ctx,
        "kv_bytes_read": kv_read,
        "bytes_per_token": per_token,
        "bandwidth_gbs": bandwidth_gbs,
        "bound_tokens_per_s": bound,
        "achieved_tokens_per_s": achieved_tokens_per_s,
        "fraction": achieved_tokens_per_s / bound if bound else None,
        "note": None if bound else "the device profile gives no memory_bandwidth_gbs: no bound",
    }


def describe(r: dict[str, Any]) -> str:
    """One line: bytes per token, the bound and the fraction achieved."""
    per_token = f"{r['bytes_per_token'] / 1e6:.2f} MB/token ({r['weight_bytes'] / 1e6:.2f} MB weights + " \
                f"{r['kv_bytes_read'] / 1e6:.3f} MB KV at mean context {r['mean_context']:g})"
    if r["bound_tokens_per_s"] is None:
        return f"{per_token}; {r['note']}"
    return (f"{per_token}; bound {r['bandwidth_gbs']:g} GB/s / that = {r['bound_tokens_per_s']:.1f} tok/s; "
            f"achieved {r['achieved_tokens_per_s']:.1f} tok/s = {100 * r['fraction']:.1f}% of the bound")
