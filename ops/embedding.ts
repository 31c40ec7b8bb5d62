// Embedding family: row gather out[i,:] (+)= table[idx[i],:] and its backward, the deterministic
// scatter-add dtable[v,:] (+)= Σ_{i: idx[i]=v} dout[i,:].
//
// The backward needs no atomics: one workgroup owns one table row v and a block of up to 256
// columns (up to 4 per thread). It walks idx in chunks of 512: each thread finds the matches among
// its 8 strided entries, a prefix sum of the 64 counts places them in a shared hit list, and every
// thread adds dout[i, c] over the listed rows. So a row costs one pass over idx plus its own
// matches, the summation order is fixed (bit-reproducible), and rows never referenced are still
// written (0, or unchanged when accumulating). Workgroup memory is kept small on purpose: naga's GL
// backend zero-fills it in shader code for every workgroup, which llvmpipe makes expensive.
// Indices >= V: the forward writes NaN for that row (visible), the backward ignores them.
//
// Both kernel families share these kernels: they are GPU-shaped already. The forward is one output
// element per invocation, 64 per workgroup (consecutive invocations copy consecutive columns of a
// table row: coalesced); the backward is a 64-invocation workgroup per (table row, 256 columns), its
// index scan and its dout reads coalesced, no atomics. At nanoGPT's shakespeare-char size (V = 65,
// C = 384, 16384 rows) the token table's backward is 2·65 = 130 workgroups of 64.

import { grid1d, groups, type Runtime } from "./runtime.ts";
import { Tensor } from "./tensor.ts";
import { rowAlign } from "./matmul/chunk.ts";

const FWD_WG = 64;
const WG = 64; // backward: threads per workgroup
const BWD_PER_THREAD = 8; // backward: indices each thread examines per round
const BWD_CHUNK = WG * BWD_PER_THREAD;
const BWD_MAX_COLS = 4; // backward: columns per thread (a workgroup covers up to 256 columns)
const MAX_Y = 4096; // backward: table rows per grid layer (dispatch dimensions are limited to 65535)
const NAN_BITS = 0x7fc00000;

// Windowed (a table past the binding cap, bound a block of rows at a time): rows [v0, v0 + Vw) of the
// table; an output row whose index lies elsewhere is left alone (another block writes it), and the
// first block writes NaN for indices >= V.
function fwdWGSL(acc: boolean, windowed = false): string {
  const load = windowed
    ? `let w = v - p.v0;
  if (v >= p.V) {
    if (p.v0 != 0u) { return; }
  } else if (w < p.Vw) {
    val = W[w * p.C + c];
  } else { return; }`
    : "if (v < p.V) { val = W[v * p.C + c]; }";
  return /* wgsl */ `
struct P { total: u32, C: u32, V: u32, stride: u32, nanBits: u32${windowed ? ", v0: u32, Vw: u32" : ""} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> I: array<u32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(${FWD_WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let e = g.x + g.y * p.stride;
  if (e >= p.total) { return; }
  let i = e / p.C;
  let c = e - i * p.C;
  let v = I[i];
  var val = bitcast<f32>(p.nanBits);
  ${load}
  Y[e] = ${acc ? "Y[e] + val" : "val"};
}`;
}

// Windowed: the rows [v0, V) of the table, DW bound from row v0 (the table past the binding cap).
function bwdWGSL(acc: boolean, K: number, windowed = false): string {
  const ks = Array.from({ length: K }, (_, k) => k);
  return /* wgsl */ `
struct P { n: u32, C: u32, V: u32${windowed ? ", v0: u32" : ""} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> I: array<u32>;
@group(0) @binding(2) var<storage, read> DY: array<f32>;
@group(0) @binding(3) var<storage, read_write> DW: array<f32>;
var<workgroup> hits: array<u32, ${BWD_CHUNK}>;
var<workgroup> start: array<u32, ${WG}>;
var<workgroup> nhits: u32;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let v = wid.y + wid.z * ${MAX_Y}u${windowed ? " + p.v0" : ""};
  if (v >= p.V) { return; }
  let c0 = wid.x * ${WG * K}u + l; // this thread's columns: c0, c0 + ${WG}, ...
  ${
    ks.map((k) =>
      `var s${k} = 0.0;
  let col${k} = min(c0 + ${k * WG}u, p.C - 1u);`
    ).join("\n  ")
  }
  for (var base = 0u; base < p.n; base += ${BWD_CHUNK}u) {
    // 1. Each thread counts the matches among its ${BWD_PER_THREAD} strided entries of the chunk.
    var mine = 0u;
    for (var j = 0u; j < ${BWD_PER_THREAD}u; j++) {
      let i = base + l + j * ${WG}u;
      if (i < p.n) { if (I[i] == v) { mine++; } }
    }
    start[l] = mine;
    workgroupBarrier();
    // 2. Exclusive prefix sum of the counts (64 entries, serial: cheaper than a tree here).
    if (l == 0u) {
      var run = 0u;
      for (var t = 0u; t < ${WG}u; t++) {
        let x = start[t];
        start[t] = run;
        run += x;
      }
      nhits = run;
    }
    workgroupBarrier();
    // 3. Each thread writes its matches into its slice of the hit list (a fixed order).
    var o = start[l];
    for (var j = 0u; j < ${BWD_PER_THREAD}u; j++) {
      let i = base + l + j * ${WG}u;
      if (i < p.n) {
        if (I[i] == v) {
          hits[o] = i;
          o++;
        }
      }
    }
    workgroupBarrier();
    // 4. Every thread sums its columns over the hit rows.
    let nh = nhits;
    for (var h = 0u; h < nh; h++) {
      let r = hits[h] * p.C;
      ${ks.map((k) => `s${k} += DY[r + col${k}];`).join("\n      ")}
    }
    // No barrier needed here: the next round writes hits/nhits only after two more barriers.
  }
  ${
    ks.map((k) =>
      `if (c0 + ${k * WG}u < p.C) {
    let o${k} = ${windowed ? "(v - p.v0)" : "v"} * p.C + c0 + ${k * WG}u;
    DW[o${k}] = ${acc ? `DW[o${k}] + s${k}` : `s${k}`};
  }`
    ).join("\n  ")
  }
}`;
}

function shape2(t: Tensor, what: string): [number, number] {
  if (t.shape.length !== 2) throw new Error(`${what}: table must be [V, C], got [${t.shape}]`);
  return [t.shape[0], t.shape[1]];
}

/** out[i,:] = table[idx[i],:] (or += when accumulate). idx u32 [n], table [V, C], out [n, C]. */
export function embeddingForward(
  rt: Runtime,
  idx: Tensor,
  table: Tensor,
  out: Tensor,
  accumulate = false,
): void {
  const [V, C] = shape2(table, "embeddingForward");
  const n = idx.size;
  if (idx.dtype !== "u32") throw new Error("embeddingForward: idx must be u32");
  if (n === 0) return;
  if (out.size < n * C) throw new Error(`embeddingForward: out has ${out.size} values, want ${n * C}`);
  if (out.buffer === idx.buffer || out.buffer === table.buffer) {
    throw new Error("embeddingForward: out must not share a buffer with idx/table");
  }
  const { workgroups, stride } = grid1d(rt, n * C, FWD_WG);
  const blocks = rowBlocks(rt, table, V, C);
  if (!blocks) {
    rt.dispatch("embedding_fwd", fwdWGSL(accumulate), { I: idx, W: table, Y: out }, [
      n * C,
      C,
      V,
      stride,
      NAN_BITS,
    ], workgroups);
    return;
  }
  for (const { v0, rows, view } of blocks) {
    rt.dispatch("embedding_fwd_window", fwdWGSL(accumulate, true), { I: idx, W: view, Y: out }, [
      n * C,
      C,
      V,
      stride,
      NAN_BITS,
      v0,
      rows,
    ], workgroups);
  }
}

/**
 * Blocks of whole rows of a [V, C] table that each fit in one binding (row starts 256-byte aligned),
 * or null when the table fits whole.
 */
function rowBlocks(rt: Runtime, t: Tensor, V: number, C: number) {
  if (t.byteLength <= rt.maxBindingBytes) return null;
  if (t.offset % 256 !== 0) {
    throw new Error("embedding: a table past the binding cap must start 256-byte aligned");
  }
  const align = rowAlign(C);
  const rows = Math.floor(rt.maxBindingBytes / (C * 4) / align) * align;
  if (rows < align) throw new Error(`embedding: ${align} rows of ${C} floats exceed the binding cap`);
  const out: { v0: number; rows: number; view: Tensor }[] = [];
  for (let v0 = 0; v0 < V; v0 += rows) {
    const n = Math.min(rows, V - v0);
    out.push({ v0, rows: n, view: new Tensor(t.rt, t.buffer, t.offset + v0 * C * 4, [n, C], "f32", t.name) });
  }
  return out;
}

/**
 * dtable[v,:] = Σ_{i: idx[i]=v} dout[i,:] (or += when accumulate). Every row is written; no atomics,
 * fixed summation order (increasing i). idx u32 [n], dout [n, C], dtable [V, C].
 */
export function embeddingBackward(
  rt: Runtime,
  idx: Tensor,
  dout: Tensor,
  dtable: Tensor,
  accumulate = false,
): void {
  const [V, C] = shape2(dtable, "embeddingBackward");
  const n = idx.size;
  if (idx.dtype !== "u32") throw new Error("embeddingBackward: idx must be u32");
  if (n === 0) throw new Error("embeddingBackward: idx is empty");
  if (dout.size < n * C) throw new Error(`embeddingBackward: dout has ${dout.size} values, want ${n * C}`);
  if (dtable.buffer === idx.buffer || dtable.buffer === dout.buffer) {
    throw new Error("embeddingBackward: dtable must not share a buffer with idx/dout");
  }
  const K = Math.min(BWD_MAX_COLS, Math.ceil(C / WG));
  const blocks = rowBlocks(rt, dtable, V, C);
  if (!blocks) {
    rt.dispatch(
      "embedding_bwd",
      bwdWGSL(accumulate, K),
      { I: idx, DY: dout, DW: dtable },
      [n, C, V],
      [groups(C, WG * K), Math.min(V, MAX_Y), Math.ceil(V / MAX_Y)],
    );
    return;
  }
  for (const { v0, rows, view } of blocks) {
    rt.dispatch(
      "embedding_bwd_window",
      bwdWGSL(accumulate, K, true),
      { I: idx, DY: dout, DW: view },
      [n, C, v0 + rows, v0],
      [groups(C, WG * K), Math.min(rows, MAX_Y), Math.ceil(rows / MAX_Y)],
    );
  }
}
