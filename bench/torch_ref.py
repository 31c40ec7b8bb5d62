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
       python3 bench/torch_ref.py --gpt2-decode [--threads N] [--device cpu|cuda] [--prompt N]
       python3 bench/torch_ref.py --gpt2-train [--steps N] [--batch B] [--block T] (GPT-2 small's shape)
       [--new-tokens N] [--n-layer L] [--n-embd C] [--n-head H] [--vocab V] [--block T]

--gpt2-decode: GPT-2 greedy decoding with a KV cache instead (the sampling-speed reference of issue
18): GPT-2's model (learned position embeddings, pre-LayerNorm blocks with a fused qkv Linear, tanh
GELU MLP, every Linear with a bias, final LayerNorm, head tied to the token embedding) with random
weights, at GPT-2 small's shape by default (12 layers, 12 heads, 768 wide, vocab 50257, block 1024),
eager, under torch.no_grad(). A prompt goes through in one pass that fills the cache; then each new
token is one position's forward against the cached keys and values, and an argmax. Prints one JSON
object: tokens/s over the new tokens (median of --rounds runs after a warm-up run).
"""

import argparse
import json
import math
import sys
import statistics
import time

import torch
import torch.nn as nn
from torch.nn import functional as F


def gpt2_decode(a: argparse.Namespace) -> None:
    """GPT-2 greedy decoding with a KV cache (see the module docstring); prints one JSON object."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    dev = torch.device(a.device)
    L = a.n_layer if a.n_layer is not None else 12
    C = a.n_embd if a.n_embd is not None else 768
    H = a.n_head if a.n_head is not None else 12
    V = a.vocab if a.vocab is not None else 50257
    T = a.block if a.block is not None else 1024
    hs = C // H

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(C)
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            self.ln_2 = nn.LayerNorm(C)
            self.c_fc = nn.Linear(C, 4 * C)
            self.mlp_proj = nn.Linear(4 * C, C)

        def forward(self, x: torch.Tensor, cache: list, t0: int) -> torch.Tensor:
            # x [B, n, C] holds positions t0 .. t0+n-1; cache [k, v] [B, H, T, hs] gets them.
            B, n, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (z.view(B, n, H, hs).transpose(1, 2) for z in (q, k, v))
            cache[0][:, :, t0 : t0 + n] = k
            cache[1][:, :, t0 : t0 + n] = v
            k, v = cache[0][:, :, : t0 + n], cache[1][:, :, : t0 + n]
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            if n > 1:  # the prompt: causal within it
                mask = torch.ones(n, t0 + n, dtype=torch.bool, device=x.device).tril(t0)
                att = att.masked_fill(~mask, float("-inf"))
            y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(B, n, C)
            x = x + self.c_proj(y)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(T, C)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)

        def forward(self, idx: torch.Tensor, caches: list, t0: int) -> torch.Tensor:
            n = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(t0, t0 + n, device=idx.device))
            for blk, cache in zip(self.h, caches):
                x = blk(x, cache, t0)
            return self.ln_f(x[:, -1]) @ self.wte.weight.t()  # the tied head, last position only

    model = GPT2().to(dev).eval()
    prompt = torch.randint(V, (1, a.prompt), generator=torch.Generator().manual_seed(1)).to(dev)

    def sync() -> None:
        if a.device == "cuda":
            torch.cuda.synchronize()

    def generate(new: int) -> tuple:
        caches = [[torch.zeros(1, H, T, hs, device=dev) for _ in range(2)] for _ in range(L)]
        with torch.no_grad():
            logits = model(prompt, caches, 0)
            sync()
            t0 = time.perf_counter()
            ids = []
            for t in range(a.prompt, a.prompt + new):
                nxt = logits.argmax(dim=-1, keepdim=True)
                ids.append(int(nxt))
                logits = model(nxt, caches, t)
            sync()
            return time.perf_counter() - t0, ids

    if a.prompt + a.new_tokens > T:
        raise SystemExit("--prompt + --new-tokens exceeds the block size")
    generate(4)  # warm-up
    secs = sorted(generate(a.new_tokens)[0] for _ in range(a.rounds))
    sec = secs[len(secs) // 2]
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split("/")[-1].strip() for line in f if "blas" in line.lower() and "/" in line})
    except OSError:
        libs = []
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "device": a.device if a.device == "cpu" else f"cuda ({torch.cuda.get_device_name()})",
                "threads": torch.get_num_threads(),
                "model": f"gpt2 L{L} H{H} C{C} V{V} T{T}",
                "params": sum(t.numel() for t in model.parameters()),
                "prompt": a.prompt,
                "new_tokens": a.new_tokens,
                "rounds": a.rounds,
                "seconds_median": sec,
                "tokens_per_s": a.new_tokens / sec,
                "blas": ",".join(libs) or "unknown",
            }
        )
    )


def gpt2_train(a: argparse.Namespace) -> None:
    """One GPT-2 training step (AdamW, batch 1, block 1024 by default): ms/step and the growth of the
    process's peak RSS from before the model exists, i.e. what the parameters, gradients, AdamW state
    and activations of the step cost PyTorch on the CPU (issue 18's memory comparison)."""
    import resource

    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    L = a.n_layer if a.n_layer is not None else 12
    C = a.n_embd if a.n_embd is not None else 768
    H = a.n_head if a.n_head is not None else 12
    V = a.vocab if a.vocab is not None else 50257
    T = a.block if a.block is not None else 1024
    B = a.batch if a.batch is not None else 1
    hs = C // H
    kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # noqa: E731 (Linux: KiB)
    base = kib()

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (z.view(B, T, H, hs).transpose(1, 2) for z in (q, k, v))
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
            y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
            x = x + self.c_proj(y)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C)

        def forward(self, idx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            x = self.wte(idx) + self.wpe(torch.arange(T))
            for blk in self.h:
                x = blk(x)
            logits = self.ln_f(x) @ self.wte.weight.t()
            return F.cross_entropy(logits.view(-1, V), y.view(-1))

    model = GPT2()
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1)
    idx, y = torch.randint(V, (B, T)), torch.randint(V, (B, T))
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(idx, y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "model": f"gpt2 L{L} H{H} C{C} V{V} T{T} B{B}",
                "params": sum(t.numel() for t in model.parameters()),
                "steps": a.steps,
                "ms_per_step_median": 1000 * sorted(times)[len(times) // 2],
                "peak_rss_growth_bytes": (kib() - base) * 1024,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpt2-decode", action="store_true", help="time GPT-2 greedy decoding with a KV cache")
    ap.add_argument("--gpt2-train", action="store_true", help="GPT-2 training steps: ms/step, peak RSS growth")
    ap.add_argument("--prompt", type=int, default=8, help="--gpt2-decode: prompt tokens")
    ap.add_argument("--new-tokens", type=int, default=32, help="--gpt2-decode: tokens timed")
    ap.add_argument("--rounds", type=int, default=3, help="--gpt2-decode: timed runs (median)")
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
    if a.gpt2_decode or a.gpt2_train:
        given = {k: getattr(a, k) for k in ("n_layer", "n_embd", "n_head", "vocab", "block", "batch", "steps")}
        for k, v in given.items():  # GPT-2 small's shape unless a flag was given
            setattr(a, k, v if f"--{k.replace('_', '-')}" in " ".join(sys.argv) else None)
        if a.gpt2_train:
            a.steps = a.steps or 2
            gpt2_train(a)
        else:
            gpt2_decode(a)
        return
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
