"""PyTorch reference for `deno task bench` and bench/gpu.sh: the same GPT training step, timed,
eager mode, on the CPU or on CUDA.

The model is the classic per-head character GPT (token + position embeddings, pre-LayerNorm blocks
of causal multi-head self-attention with per-head key/query/value Linear(bias=False), projection,
4x ReLU MLP, dropout on attention weights / projection / MLP output, final LayerNorm, linear head),
trained with AdamW on random token batches (weight decay on all parameters, or with
--decay-params matmul only on the Linear weight matrices; optional global-norm clipping, as
train.ts's nanogpt-char preset). On CUDA every timed step ends with torch.cuda.synchronize().
Prints one JSON object on stdout.

Usage: python3 bench/torch_ref.py [--steps N] [--warmup N] [--threads N] [--device cpu|cuda]
       [--batch B] [--block T] [--n-embd C] [--n-head H] [--n-layer L] [--vocab V] [--dropout P]
       [--lr LR] [--beta2 B2] [--weight-decay WD] [--decay-params all|matmul] [--grad-clip G]
       [--time-budget S]
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
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--decay-params", choices=["all", "matmul", "2d"], default="all")
    ap.add_argument("--grad-clip", type=float, default=0.0)
    ap.add_argument("--time-budget", type=float, default=120.0, help="seconds of timed steps at most")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    dev = torch.device(a.device)
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
            x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
            logits = self.lm_head(self.ln_f(self.blocks(x)))
            return F.cross_entropy(logits.view(b * t, V), targets.view(b * t))

    model = GPT().to(dev)
    model.train()
    # train.ts's --decay-params: all | matmul (Linear weight matrices) | 2d (also the embeddings).
    decay, no_decay = [], []
    for name, p_ in model.named_parameters():
        is_matmul = p_.dim() >= 2 and not name.startswith(("tok.", "pos."))
        rule = {"all": True, "matmul": is_matmul, "2d": p_.dim() >= 2}[a.decay_params]
        (decay if rule else no_decay).append(p_)
    groups = [{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, a.beta2))
    g = torch.Generator().manual_seed(1)

    def sync() -> None:
        if a.device == "cuda":
            torch.cuda.synchronize()

    def step() -> torch.Tensor:
        # Batches are drawn on the host and copied, as train.ts writes its ids each step.
        xb = torch.randint(V, (a.batch, T), generator=g).to(dev, non_blocking=True)
        yb = torch.randint(V, (a.batch, T), generator=g).to(dev, non_blocking=True)
        loss = model(xb, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    sync()
    # Which BLAS the matmuls went to (Debian's torch uses whatever libblas.so.3 points at).
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split("/")[-1].strip() for line in f if "blas" in line.lower() and "/" in line})
    except OSError:
        libs = []
    times = []
    loss = float("nan")
    start = time.perf_counter()
    for i in range(a.steps):
        if i > 0 and time.perf_counter() - start > a.time_budget:
            break
        t0 = time.perf_counter()
        loss_t = step()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
        loss = float(loss_t)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "device": a.device if a.device == "cpu" else f"cuda ({torch.cuda.get_device_name()})",
                "threads": torch.get_num_threads(),
                "steps": len(times),
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
