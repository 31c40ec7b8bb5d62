// Products whose operands do not fit in one storage binding (the runtime's cap, rt.maxBindingBytes):
// GPT-2's head weight [50257, 768] is 154 MB, over the 128 MiB WebGPU default. The product is cut
// into blocks of rows of C (M), columns of C (N) and the inner dimension (K), so that each operand
// block lies in a window of whole rows of its storage within the cap:
//   x · Wᵀ  (W [V, C] stored [N, K]):  N blocks (C's columns, through a scratch and a scatter)
//   dY · W  (W [V, C] stored [K, N]):  K blocks, accumulated into C (dY's columns gathered)
//   dYᵀ · x (dW [V, C]):               M blocks of dW (dY's columns gathered)
// A block that is whole rows of its storage is bound in place (a window: its offset is a multiple of
// 64 rows, so 256-byte aligned); any other block is copied ("gathered") into a scratch of its own
// first, and a block of C that is not whole rows is computed in a scratch and added ("scattered")
// into C. Only products past the cap come here: everything else runs exactly as before.

import type { MatmulProblem } from "../matmul.ts";
import { grid1d, type Runtime } from "../runtime.ts";
import { Tensor } from "../tensor.ts";

const WG = 256;
/** Rows of `ld` floats whose multiples start 256-byte aligned: block starts along a storage's rows. */
export const rowAlign = (ld: number): number => 64 / gcd(ld, 64);
const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);

// dst[r·cols + c] = src[r·ld + c0 + c] (gather), or dst[r·ld + c0 + c] (+)= src[r·cols + c] (scatter).
const copyWGSL = (scatter: boolean, acc: boolean) => /* wgsl */ `
struct P { rows: u32, cols: u32, ld: u32, c0: u32, stride: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(2) var<storage, read_write> D: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let e = g.x + g.y * p.stride;
  if (e >= p.rows * p.cols) { return; }
  let r = e / p.cols;
  let c = e - r * p.cols;
  let wide = r * p.ld + p.c0 + c;
  ${scatter ? `D[wide] = ${acc ? "D[wide] + S[e]" : "S[e]"};` : "D[e] = S[wide];"}
}`;

/** Whether `p` binds an operand past the runtime's cap (then `matmulChunked` must run it). */
export function needsChunks(rt: Runtime, p: MatmulProblem): boolean {
  const cap = rt.maxBindingBytes;
  return [p.A, p.B, p.C, p.bias, p.rowSums].some((t) => t && t.byteLength > cap);
}

/**
 * The largest block of a dimension whose rows of `ld` floats fit in the cap (the dimension if it
 * fits), a multiple of `align` rows.
 */
function rowsThatFit(rt: Runtime, dim: number, ld: number, align: number, what: string): number {
  if (dim * ld * 4 <= rt.maxBindingBytes) return dim;
  const rows = Math.floor(rt.maxBindingBytes / (ld * 4) / align) * align;
  if (rows < align) {
    throw new Error(`matmul: ${align} rows of ${what} (${ld} floats) exceed the binding cap`);
  }
  return rows;
}

/** Per-runtime scratch buffers (one per role), grown on demand. */
const scratches = new WeakMap<Runtime, Map<string, Tensor>>();
function scratch(rt: Runtime, role: string, floats: number): Tensor {
  let m = scratches.get(rt);
  if (!m) scratches.set(rt, m = new Map());
  let t = m.get(role);
  if (!t || t.size < floats) m.set(role, t = Tensor.empty(rt, [floats], "f32", "matmul-chunk"));
  return new Tensor(rt, t.buffer, 0, [floats], "f32", t.name);
}

/** The window of `t` (stored [rows, ld]) holding storage rows [r0, r0 + n). */
function rowWindow(t: Tensor, r0: number, n: number, ld: number): Tensor {
  if (t.offset % 256 !== 0) throw new Error(`matmul: a chunked operand must start 256-byte aligned`);
  return new Tensor(t.rt, t.buffer, t.offset + r0 * ld * 4, [n * ld], "f32", t.name);
}

/**
 * Block [r0, r0 + rows) x [c0, c0 + cols) of `t` stored [*, ld]: a window in place when it is whole
 * rows, else a gathered copy in the scratch of `role`.
 */
function block(
  rt: Runtime,
  t: Tensor,
  ld: number,
  r0: number,
  rows: number,
  c0: number,
  cols: number,
  role: string,
) {
  const win = rowWindow(t, r0, rows, ld);
  if (cols === ld) return win;
  const dst = scratch(rt, role, rows * cols);
  const { workgroups, stride } = grid1d(rt, rows * cols, WG);
  rt.dispatch(
    "matmul_chunk_gather",
    copyWGSL(false, false),
    { S: win, D: dst },
    [rows, cols, ld, c0, stride],
    workgroups,
  );
  return dst;
}

/** A vector window [i0, i0 + n) of `t`: in place when 256-byte aligned, else a copy in a scratch. */
function vecWindow(rt: Runtime, t: Tensor, i0: number, n: number, role: string, keep: boolean) {
  if ((t.offset + 4 * i0) % 256 === 0) {
    return { view: new Tensor(rt, t.buffer, t.offset + 4 * i0, [n]), copied: false };
  }
  if (!keep) return { view: scratch(rt, role, n), copied: true };
  return { view: block(rt, t, t.size, 0, 1, i0, n, role), copied: true };
}

/** Record dst[0, c0 : c0 + cols) of rows of `ld` (+)= src, a rows x cols block. */
function scatter(
  rt: Runtime,
  src: Tensor,
  dst: Tensor,
  rows: number,
  cols: number,
  ld: number,
  c0: number,
  acc: boolean,
) {
  const { workgroups, stride } = grid1d(rt, rows * cols, WG);
  rt.dispatch(
    "matmul_chunk_scatter",
    copyWGSL(true, acc),
    { S: src, D: dst },
    [rows, cols, ld, c0, stride],
    workgroups,
  );
}

/** Run `p` (batch 1) as products of blocks that each fit in one binding; `run` records one product. */
export function matmulChunked(rt: Runtime, p: MatmulProblem, run: (q: MatmulProblem) => void): void {
  const { M, N, K, transA, transB } = p;
  if (p.batch !== 1 || p.norm) throw new Error("matmul: only single, unnormalised products can be chunked");
  // Blocks along each storage's row dimension (A is [M, K] or [K, M], B [K, N] or [N, K], C [M, N]),
  // starting where every storage that has that dimension as its rows is 256-byte aligned.
  const alignM = Math.max(rowAlign(N), transA ? 1 : rowAlign(K));
  const alignN = transB ? rowAlign(K) : 1;
  const alignK = Math.max(transA ? rowAlign(M) : 1, transB ? 1 : rowAlign(N));
  let mb = rowsThatFit(rt, M, N, alignM, "C");
  let nb = N, kb = K;
  if (transA) kb = Math.min(kb, rowsThatFit(rt, K, M, alignK, "A"));
  else mb = Math.min(mb, rowsThatFit(rt, M, K, alignM, "A"));
  if (transB) nb = Math.min(nb, rowsThatFit(rt, N, K, alignN, "B"));
  else kb = Math.min(kb, rowsThatFit(rt, K, N, alignK, "B"));
  if (kb < K && p.epilogue !== "none") throw new Error("matmul: an epilogue needs K in one block");
  if (nb < N && p.rowSums && p.accumulate) {
    throw new Error("matmul: rowSums with accumulate needs N in one block");
  }
  for (let i0 = 0; i0 < M; i0 += mb) {
    const mr = Math.min(mb, M - i0);
    for (let j0 = 0; j0 < N; j0 += nb) {
      const nr = Math.min(nb, N - j0);
      const direct = nr === N;
      const C = direct ? rowWindow(p.C, i0, mr, N) : scratch(rt, "c", mr * nr);
      const bias = p.bias ? vecWindow(rt, p.bias, j0, nr, "bias", true).view : null;
      // The bias gradient: in place when aligned, else in a scratch holding the old values (accumulate).
      const rs = p.rowSums && j0 === 0 ? vecWindow(rt, p.rowSums, i0, mr, "rs", p.accumulate) : null;
      for (let k0 = 0; k0 < K; k0 += kb) {
        const kr = Math.min(kb, K - k0);
        const first = k0 === 0;
        run({
          ...p,
          A: transA ? block(rt, p.A, M, k0, kr, i0, mr, "a") : block(rt, p.A, K, i0, mr, k0, kr, "a"),
          B: transB ? block(rt, p.B, K, j0, nr, k0, kr, "b") : block(rt, p.B, N, k0, kr, j0, nr, "b"),
          C,
          M: mr,
          N: nr,
          K: kr,
          bias: first ? bias : null,
          accumulate: first ? direct && p.accumulate : true,
          rowSums: rs?.view ?? null,
        });
      }
      if (rs?.copied) scatter(rt, rs.view, p.rowSums!, 1, mr, M, i0, false);
      if (!direct) scatter(rt, C, rowWindow(p.C, i0, mr, N), mr, nr, N, j0, p.accumulate);
    }
  }
}
