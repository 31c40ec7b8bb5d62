"""PyTorch CPU reference for `deno task bench`: the same GPT training step, timed.

The model is the classic per-head character GPT (token + position embeddings, pre-LayerNorm blocks
of causal multi-head self-attention with per-head key/query/value Linear(bias=False), projection,
4x ReLU MLP, dropout on attention weights / projection / MLP output, final LayerNorm, linear head),
trained with AdamW on random token batches. Prints one JSON object on stdout.

Usage: python3 bench/torch_ref.py [--steps N] [--warmup N] [--threads N] [--batch B] [--block T]
       [--n-embd C] [--n-head H] [--n-layer L] [--vocab V] [--dropout P]
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
from torch.nn import functional as F


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--dropout", type=float, default=0.1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    C, T, V, p = a.n_embd, a.block, a.vocab, a.dropout
    hs = C // a.n_head

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.key = nn.Linear(C, hs, bias=False)
            self.query = nn.Linear(C, hs, bias=False)
            self.value = nn.Linear(C, hs, bias=False)
            self.register_buffer("tril", torch.tril(torch.ones(T, T)))
            self.dropout = nn.Dropout(p)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _, t, _ = x.shape
            k, q = self.key(x), self.query(x)
            wei = q @ k.transpose(-2, -1) * hs**-0.5
            wei = wei.masked_fill(self.tril[:t, :t] == 0, float("-inf"))
            wei = self.dropout(F.softmax(wei, dim=-1))
            return wei @ self.value(x)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.ModuleList([Head() for _ in range(a.n_head)])
            self.proj = nn.Linear(C, C)
            self.drop1 = nn.Dropout(p)
            self.ffwd = nn.Sequential(nn.Linear(C, 4 * C), nn.ReLU(), nn.Linear(4 * C, C), nn.Dropout(p))
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.ln1(x)
            x = x + self.drop1(self.proj(torch.cat([head(h) for head in self.heads], dim=-1)))
            return x + self.ffwd(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(V, C)
            self.pos = nn.Embedding(T, C)
            self.blocks = nn.Sequential(*[Block() for _ in range(a.n_layer)])
            self.ln_f = nn.LayerNorm(C)
            self.lm_head = nn.Linear(C, V)

        def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            b, t = idx.shape
            x = self.tok(idx) + self.pos(torch.arange(t))
            logits = self.lm_head(self.ln_f(self.blocks(x)))
            return F.cross_entropy(logits.view(b * t, V), targets.view(b * t))

    model = GPT()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)

    def step() -> float:
        xb = torch.randint(V, (a.batch, T), generator=g)
        yb = torch.randint(V, (a.batch, T), generator=g)
        loss = model(xb, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    for _ in range(a.warmup):
        step()
    # Which BLAS the matmuls went to (Debian's torch uses whatever libblas.so.3 points at).
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split("/")[-1].strip() for line in f if "blas" in line.lower() and "/" in line})
    except OSError:
        libs = []
    times = []
    loss = float("nan")
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1000)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "steps": a.steps,
                "ms_per_step_median": statistics.median(times),
                "ms_per_step_min": min(times),
                "ms_per_step_mean": statistics.fmean(times),
                "final_loss": loss,
                "params": sum(t.numel() for t in model.parameters()),
                "blas": ",".join(libs) or "unknown",
            }
        )
    )


if __name__ == "__main__":
    main()
