#!/usr/bin/env python3
"""An independent forward pass of moerec's model, in NumPy (float64).

Written from README "The model, operation by operation", not from the Swift sources, so
that the two implementations can only agree if both follow that description. It reads a
safetensors file (its own parser) and the config JSON that `moerec export` writes beside
it, runs one batch in evaluation mode and compares logits and losses with moerec's.

    moe_reference.py compare MODEL.safetensors CONFIG.json BATCH.json EXPECTED.json
                     [--tolerance 1e-4] [--perturb NAME]
    moe_reference.py digests MODEL.safetensors

BATCH.json: {"b": B, "t": T, "tokens": [B*T ids], and either "targets": [B*T ids, -1 for
no loss] (language model) or "labels": [B] and "lengths": [B] (classification)}.
EXPECTED.json: {"logits": [flat], "cross_entropy", "aux_loss", "z_loss", "loss",
"dropped": [one fraction per sparse layer]}, all from moerec.

`compare` prints one relative difference per quantity and the largest, and exits 0 when
that is within the tolerance, 1 when it is not, 2 on unreadable input. `--perturb NAME`
changes one detail of the model description (see PERTURBATIONS) so that a test can show
the comparison notices it. `digests` prints the SHA-256 of each tensor's bytes as read.

NumPy only; the rest is the standard library.
"""

import argparse
import hashlib
import json
import math
import struct
import sys
import traceback

import numpy as np

# Each flips one detail of the description; the comparison must then fail.
PERTURBATIONS = {
    "norm-eps": "the norms' epsilon: LayerNorm 1e-6 instead of 1e-5, RMSNorm 1e-5 instead of 1e-6",
    "gelu": "the exact (erf) GELU instead of the tanh form",
    "causal": "attention over every position of the sequence, no causal mask",
    "attn-scale": "attention scores scaled by 1/D instead of 1/sqrt(D)",
    "gate-renorm": "gates renormalised over the chosen experts when K = 1, raw probabilities when K > 1",
    "drop-renorm": "the kept gates renormalised again after dropping",
    "capacity": "one slot more per expert",
    "slot-order": "slots claimed row by row (all of a row's choices before the next row's)",
    "aux-loss": "the loss without the auxiliary losses (CE alone)",
    "pool": "classification: the mean over all T positions, pads included",
    "pad-routing": "classification: pads routed and counted like real tokens",
}


class InputError(Exception):
    pass


# MARK: safetensors


def read_safetensors(path):
    """(tensors, raw bytes, metadata): name -> float64 array, name -> bytes, dict.

    Format: u64 little-endian header length, a JSON header mapping each name to dtype,
    shape and [begin, end) offsets into the data that follows (plus `__metadata__`).
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise InputError(f"{path}: shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if 8 + header_len > len(blob):
        raise InputError(f"{path}: header length {header_len} runs past the end of the file ({len(blob)} bytes)")
    try:
        header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: header is not JSON: {e}")
    metadata = header.pop("__metadata__", {})
    data = blob[8 + header_len:]
    tensors, raw, spans = {}, {}, []
    for name, info in header.items():
        if info.get("dtype") != "F32":
            raise InputError(f"{path}: tensor {name}: dtype {info.get('dtype')}, expected F32")
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
        if not (0 <= begin <= end <= len(data)) or end - begin != 4 * math.prod(shape):
            raise InputError(f"{path}: tensor {name}: offsets [{begin}, {end}) do not hold shape {shape} in {len(data)} data bytes")
        spans.append((begin, end, name))
        raw[name] = data[begin:end]
        tensors[name] = np.frombuffer(raw[name], dtype="<f4").astype(np.float64).reshape(shape)
    # The data section is the tensors back to back, no gaps, no overlaps.
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise InputError(f"{path}: tensor {name} starts at {begin}, expected {position}")
        position = end
    if position != len(data):
        raise InputError(f"{path}: {len(data) - position} data bytes belong to no tensor")
    return tensors, raw, metadata


# MARK: the model (README "The model, operation by operation", items 1-8)


class Reference:
    def __init__(self, tensors, config, perturb=None):
        self.p = tensors
        self.perturb = perturb
        self.c = int(config["d_model"])
        self.heads = int(config["heads"])
        self.layers = int(config["layers"])
        self.experts = int(config["experts"])
        self.top_k = int(config["top_k"])
        self.moe_every = int(config["moe_every"])
        self.capacity_factor = float(config["capacity_factor_eval"])
        self.aux_coef = float(config["aux_loss_coef"])
        self.z_coef = float(config["z_loss_coef"])
        self.norm_kind = config.get("norm", "layernorm")
        if self.norm_kind not in ("layernorm", "rmsnorm"):
            raise InputError(f"config: norm={self.norm_kind} is neither layernorm nor rmsnorm")
        if self.c % self.heads != 0:
            raise InputError(f"config: heads={self.heads} does not divide d_model={self.c}")
        if tensors["embed.wte"].shape[1] != self.c:
            raise InputError(f"embed.wte has shape {list(tensors['embed.wte'].shape)}; config d_model={self.c}")

    def is_sparse(self, layer):
        return self.experts > 1 and (layer + 1) % self.moe_every == 0

    # 2. Norms

    def norm(self, x, prefix):
        weight = self.p[prefix + ".weight"]
        if self.norm_kind == "layernorm":
            eps = 1e-6 if self.perturb == "norm-eps" else 1e-5
            mu = x.mean(axis=-1, keepdims=True)
            var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
            return (x - mu) / np.sqrt(var + eps) * weight + self.p[prefix + ".bias"]
        eps = 1e-5 if self.perturb == "norm-eps" else 1e-6
        return x / np.sqrt((x ** 2).mean(axis=-1, keepdims=True) + eps) * weight

    # 4. Attention, one sequence (T, C) at a time

    def attention(self, a, prefix):
        T, C, H = a.shape[0], self.c, self.heads
        D = C // H
        qkv = a @ self.p[prefix + "attn.wqkv"] + self.p[prefix + "attn.bqkv"]
        q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
        scale = 1 / D if self.perturb == "attn-scale" else 1 / math.sqrt(D)
        future = np.triu(np.ones((T, T), dtype=bool), k=1)
        out = np.empty((T, C))
        for i in range(H):
            cols = slice(i * D, (i + 1) * D)
            scores = (q[:, cols] @ k[:, cols].T) * scale
            if self.perturb != "causal":
                scores = np.where(future, -np.inf, scores)
            out[:, cols] = softmax(scores) @ v[:, cols]
        return out @ self.p[prefix + "attn.wo"] + self.p[prefix + "attn.bo"]

    # 5. GELU and the dense FFN

    def gelu(self, z):
        if self.perturb == "gelu":
            return 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))

    def ffn(self, a, w1, b1, w2, b2):
        return self.gelu(a @ w1 + b1) @ w2 + b2

    # 6. The MoE layer over all N rows

    def moe(self, a, valid, prefix):
        N, E, K = a.shape[0], self.experts, self.top_k
        logits = a @ self.p[prefix + "router.w"]
        probs = softmax(logits)
        # Descending probability, ties to the lower index (a stable sort of -p).
        choices = np.argsort(-probs, axis=1, kind="stable")[:, :K]
        chosen = np.take_along_axis(probs, choices, axis=1)
        renormalise = K > 1
        if self.perturb == "gate-renorm":
            renormalise = not renormalise
        gates = chosen / chosen.sum(axis=1, keepdims=True) if renormalise else chosen.copy()

        if self.perturb == "pad-routing":
            valid = np.ones(N, dtype=bool)
        n_valid = int(valid.sum())
        capacity = max(1, math.ceil(np.float32(self.capacity_factor) * np.float32(K * n_valid) / np.float32(E)))
        if self.perturb == "capacity":
            capacity += 1

        if self.perturb == "slot-order":
            order = [(n, k) for n in range(N) for k in range(K)]
        else:
            order = [(n, k) for k in range(K) for n in range(N)]
        kept = np.zeros((N, K), dtype=bool)
        load = np.zeros(E, dtype=int)
        for n, k in order:
            e = choices[n, k]
            if valid[n] and load[e] < capacity:
                kept[n, k] = True
                load[e] += 1

        weights = np.where(kept, gates, 0.0)
        if self.perturb == "drop-renorm":
            sums = weights.sum(axis=1, keepdims=True)
            weights = np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)
        out = np.zeros_like(a)
        w1, b1 = self.p[prefix + "experts.w1"], self.p[prefix + "experts.b1"]
        w2, b2 = self.p[prefix + "experts.w2"], self.p[prefix + "experts.b2"]
        for e in range(E):
            rows, ranks = np.nonzero(kept & (choices == e))
            if len(rows):
                y = self.ffn(a[rows], w1[e], b1[e], w2[e], b2[e])
                np.add.at(out, rows, weights[rows, ranks][:, None] * y)

        first = np.bincount(choices[valid, 0], minlength=E) / n_valid
        mean_prob = probs[valid].mean(axis=0)
        aux = E * float(first @ mean_prob)
        lse = logsumexp(logits[valid])
        z = float((lse ** 2).mean())
        dropped = 1 - kept.sum() / (K * n_valid)
        return out, aux, z, dropped

    # 1-8: the whole forward pass

    def forward(self, batch):
        B, T = batch["b"], batch["t"]
        tokens = np.asarray(batch["tokens"], dtype=np.int64).reshape(B, T)
        classification = "labels" in batch
        lengths = np.asarray(batch["lengths"], dtype=np.int64) if classification else np.full(B, T)
        valid = (np.arange(T)[None, :] < lengths[:, None]).reshape(-1) if classification else np.ones(B * T, dtype=bool)

        x = self.p["embed.wte"][tokens] + self.p["embed.wpe"][:T][None, :, :]   # (B, T, C)
        aux_sum, z_sum, dropped = 0.0, 0.0, []
        for l in range(self.layers):
            prefix = f"layers.{l}."
            a = self.norm(x, prefix + "ln1")
            x = x + np.stack([self.attention(a[b], prefix) for b in range(B)])
            a = self.norm(x, prefix + "ln2").reshape(B * T, self.c)
            if self.is_sparse(l):
                y, aux, z, drop = self.moe(a, valid, prefix)
                aux_sum += aux
                z_sum += z
                dropped.append(drop)
            else:
                y = self.ffn(a, self.p[prefix + "ffn.w1"], self.p[prefix + "ffn.b1"],
                             self.p[prefix + "ffn.w2"], self.p[prefix + "ffn.b2"])
            x = x + y.reshape(B, T, self.c)
        y = self.norm(x, "lnf")

        if classification:
            ends = np.clip(lengths, 1, T)
            if self.perturb == "pool":
                ends = np.full(B, T)
            pooled = np.stack([y[b, :ends[b]].mean(axis=0) for b in range(B)])
            logits = pooled @ self.p["head.w"] + self.p["head.b"]
            targets = np.asarray(batch["labels"], dtype=np.int64)
        else:
            logits = y.reshape(B * T, self.c) @ self.p["embed.wte"].T
            targets = np.asarray(batch["targets"], dtype=np.int64)
        scored = targets >= 0
        if scored.any():
            rows = np.nonzero(scored)[0]
            ce = float((logsumexp(logits[rows]) - logits[rows, targets[rows]]).mean())
        else:
            ce = 0.0
        loss = ce if self.perturb == "aux-loss" else ce + self.aux_coef * aux_sum + self.z_coef * z_sum
        return {"logits": logits.reshape(-1), "cross_entropy": ce, "aux_loss": aux_sum, "z_loss": z_sum,
                "loss": loss, "dropped": dropped}


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def logsumexp(x):
    m = x.max(axis=-1)
    return m + np.log(np.exp(x - m[..., None]).sum(axis=-1))


# MARK: comparison


def relative_difference(ours, theirs):
    """Largest |ours - theirs| over the largest |theirs|: element-wise relative errors mean
    nothing for entries near zero, so the scale is the quantity's own."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        return math.inf
    if ours.size == 0:
        return 0.0
    difference = float(np.abs(ours - theirs).max())
    if difference == 0:
        return 0.0
    scale = float(np.abs(theirs).max())
    return difference / scale if scale > 0 else math.inf


def compare(args):
    if args.perturb is not None and args.perturb not in PERTURBATIONS:
        raise InputError(f"--perturb {args.perturb}: not one of {', '.join(PERTURBATIONS)}")
    tensors, _, _ = read_safetensors(args.model)
    config = load_json(args.config)
    batch = load_json(args.batch)
    expected = load_json(args.expected)
    ours = Reference(tensors, config, perturb=args.perturb).forward(batch)
    worst = 0.0
    for key in ("logits", "cross_entropy", "aux_loss", "z_loss", "loss", "dropped"):
        if key not in expected:
            raise InputError(f"{args.expected}: no \"{key}\"")
        difference = relative_difference(ours[key], expected[key])
        worst = max(worst, difference)
        print(f"{key}: relative difference {difference:.3e}")
    label = f" (perturbed: {args.perturb})" if args.perturb else ""
    print(f"max relative difference: {worst:.3e}{label}")
    if worst > args.tolerance:
        print(f"mismatch: {worst:.3e} > tolerance {args.tolerance:.0e}", file=sys.stderr)
        return 1
    return 0


def digests(args):
    _, raw, _ = read_safetensors(args.model)
    for name, data in raw.items():
        print(f"{hashlib.sha256(data).hexdigest()}  {name}")
    return 0


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: {e}")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("compare", help="compute logits and losses for a batch and compare with moerec's")
    c.add_argument("model")
    c.add_argument("config")
    c.add_argument("batch")
    c.add_argument("expected")
    c.add_argument("--tolerance", type=float, default=1e-4)
    c.add_argument("--perturb", metavar="NAME", help="; ".join(f"{k}: {v}" for k, v in PERTURBATIONS.items()))
    d = commands.add_parser("digests", help="print the SHA-256 of each tensor's bytes")
    d.add_argument("model")
    args = parser.parse_args(argv)
    try:
        return compare(args) if args.command == "compare" else digests(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception:
        # A missing key or a malformed batch: still "unreadable input" (2), never the
        # mismatch status (1), which a test reads as the comparison's verdict.
        traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
