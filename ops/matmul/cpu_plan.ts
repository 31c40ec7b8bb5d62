// Planner of the CPU family's window kernel (cpu_window.ts): how one product is tiled into dispatches
// whose operand blocks each lie in one 64 KiB uniform-buffer window. Pure: it depends only on the
// shape, the number of uniform bindings per stage and where the operands' windows start, so the
// dispatch count of any product can be computed without a device (`windowDispatches`).

/** Floats in one uniform-buffer window (64 KiB, the WebGPU default maxUniformBufferBindingSize). */
export const WINDOW = 16384;
/** Floats: 256 bytes, minUniformBufferOffsetAlignment. */
export const ALIGN = 64;

/** How the pairs of one dispatch map onto its A and B window bindings. */
export type PairMap = "rows" | "cols" | "k"; // distinct A windows / distinct B windows / both

/** Register tile of the window kernel: TM rows x TN columns per invocation, WX invocations per workgroup. */
export interface WindowTile {
  /** Rows of C per invocation. */
  tm: number;
  /** Columns of C per invocation. */
  tn: number;
  /** Invocations per workgroup. */
  wx: number;
}

/** The window kernel's default tile. */
export const DEFAULT_WINDOW_TILE: WindowTile = { tm: 8, tn: 8, wx: 8 };

/** One block of the product: rows [mLo, mHi) x columns [nLo, nHi) x k [k0, k0 + kc). */
export interface Pair {
  mLo: number;
  mHi: number;
  nLo: number;
  nHi: number;
  k0: number;
  kc: number;
}

interface Blocks {
  Mr: number;
  Nr: number;
  Kr: number;
}

/** A window of an operand, in floats relative to the operand's start. */
export interface WinRef {
  /** Aligned first float of the window. */
  start: number;
  /** One past the last float used. */
  end: number;
}

/** One dispatch of a plan. */
export interface DispatchPlan {
  map: PairMap;
  rowBase: number;
  rowEnd: number;
  colBase: number;
  colEnd: number;
  /** Add the existing C (accumulate, or a later dispatch of a split K). */
  loadC: boolean;
  /** The last dispatch of its output block: bias and epilogue apply. */
  fin: boolean;
  /** a, b: index into aWins / bWins. */
  pairs: (Pair & { a: number; b: number })[];
  aWins: WinRef[];
  bWins: WinRef[];
  /** Per pair: first float of its block relative to its A window. */
  aOff: number[];
  bOff: number[];
}

/** A product's dispatches, all of one kernel variant (np pairs, one PairMap). */
export interface Plan {
  np: number;
  map: PairMap;
  dispatches: DispatchPlan[];
}

/** Pairs (window bindings) one dispatch may hold: `single` for rows/cols maps, `k` for the k map. */
export interface PairLimits {
  single: number;
  k: number;
}

/** Pair limits for an adapter with `ubos` uniform buffers per shader stage (binding 0 is the params). */
export function pairLimits(ubos: number): PairLimits {
  const n = ubos - 1;
  return { single: Math.max(1, Math.min(14, n - 1)), k: Math.max(1, Math.min(7, Math.floor(n / 2))) };
}

/**
 * Window tiles to try for an M x N product, best first. Narrow products get narrow tiles (a workgroup
 * spans WX·TN columns, and lanes past N only repeat the last one). With B stored [N, K] a block of
 * columns spans (columns - 1)·K floats of B, so past K ≈ 260 the 64 columns of the default tile no
 * longer fit one window: narrower tiles are tried before giving up for the storage kernel. A single
 * row (the decoder's one-position passes) gets one-row tiles, up to 16 columns wide: the default
 * tile's 8 rows would compute the same row 8 times (1.5-1.7x slower at 1x1152x384 and 1x384x1536).
 */
export function windowTiles(N: number, M = 2): WindowTile[] {
  const { wx } = DEFAULT_WINDOW_TILE;
  const [tm, tn] = M === 1 ? [1, 16] : [DEFAULT_WINDOW_TILE.tm, DEFAULT_WINDOW_TILE.tn];
  let w = tn;
  while (w > 1 && wx * (w / 2) >= N) w /= 2;
  const out: WindowTile[] = [];
  for (; w >= 1; w = w >> 1) out.push({ tm, tn: w, wx });
  return out;
}

/** Floats of A (or B) that a block touches, relative to the operand's start. */
function spanA(transA: boolean, M: number, K: number, mLo: number, mHi: number, k0: number, kc: number) {
  return transA
    ? { start: k0 * M + mLo, end: (k0 + kc - 1) * M + mHi }
    : { start: mLo * K + k0, end: (mHi - 1) * K + k0 + kc };
}
function spanB(transB: boolean, N: number, K: number, nLo: number, nHi: number, k0: number, kc: number) {
  return transB
    ? { start: nLo * K + k0, end: (nHi - 1) * K + k0 + kc }
    : { start: k0 * N + nLo, end: (k0 + kc - 1) * N + nHi };
}

/**
 * Choose block sizes (rows Mr, columns Nr, depth Kr) so each block's A and B footprints fit a window
 * (`room` floats), minimising dispatches, then pairs. Null if even one workgroup tile cannot fit.
 */
function chooseBlocks(
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  t: WindowTile,
  room: number,
  lim: PairLimits,
): Blocks | null {
  const TNw = t.wx * t.tn;
  let best: Blocks | null = null, bestCost = Infinity;
  let prevKr = -1;
  for (let nk = 1; nk <= K; nk++) {
    const Kr = Math.ceil(K / nk);
    if (Kr === prevKr) continue;
    prevKr = Kr;
    if (Kr > room) continue;
    let Mr = transA ? room - (Kr - 1) * M : Math.floor((room - Kr) / K) + 1;
    let Nr = transB ? Math.floor((room - Kr) / K) + 1 : room - (Kr - 1) * N;
    if (Mr >= M) Mr = M;
    else Mr = Math.floor(Mr / t.tm) * t.tm;
    if (Nr >= N) Nr = N;
    else Nr = Math.floor(Nr / TNw) * TNw;
    if (Mr < 1 || Nr < 1) continue;
    const nM = Math.ceil(M / Mr), nN = Math.ceil(N / Nr), nK = Math.ceil(K / Kr);
    let dispatches: number;
    if (nK > 1) dispatches = nM * nN * Math.ceil(nK / lim.k);
    else if (nN === 1) dispatches = Math.ceil(nM / lim.single);
    else if (nM === 1) dispatches = Math.ceil(nN / lim.single);
    else dispatches = nN * Math.ceil(nM / lim.single);
    // A dispatch costs ~0.1 ms on lavapipe; a split K also re-reads and re-writes C per dispatch.
    const cost = dispatches * (nK > 1 ? 2 : 1) * 1e6 + nM * nN * nK;
    if (cost < bestCost) {
      bestCost = cost;
      best = { Mr, Nr, Kr };
    }
    if (nM * nN === 1) break; // smaller k blocks only add pairs from here on
  }
  return best;
}

const alignDown = (x: number, base: number) => Math.floor((x + base) / ALIGN) * ALIGN - base;

/**
 * Tile one product into dispatches of window pairs. `aBase`/`bBase` are the operands' float offsets
 * modulo ALIGN in the buffers their windows will be bound from (0 for the staging area).
 */
function planWindows(
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  t: WindowTile,
  lim: PairLimits,
  aBase: number,
  bBase: number,
  accumulate: boolean,
): Plan | null {
  for (const slack of [0, ALIGN - 1]) {
    const blocks = chooseBlocks(M, N, K, transA, transB, t, WINDOW - slack, lim);
    if (!blocks) continue;
    const plan = buildPlan(M, N, K, transA, transB, blocks, lim, aBase, bBase, accumulate);
    if (plan) return plan;
  }
  return null;
}

function buildPlan(
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  { Mr, Nr, Kr }: Blocks,
  lim: PairLimits,
  aBase: number,
  bBase: number,
  accumulate: boolean,
): Plan | null {
  const nM = Math.ceil(M / Mr), nN = Math.ceil(N / Nr), nK = Math.ceil(K / Kr);
  const block = (mb: number, nb: number, kb: number): Pair => ({
    mLo: mb * Mr,
    mHi: Math.min(M, (mb + 1) * Mr),
    nLo: nb * Nr,
    nHi: Math.min(N, (nb + 1) * Nr),
    k0: kb * Kr,
    kc: Math.min(K, (kb + 1) * Kr) - kb * Kr,
  });
  // Group blocks into dispatches: a run of row blocks (one column block), a run of column blocks
  // (one row block), or a run of k blocks of one output block.
  const groupsOf: { map: PairMap; pairs: Pair[]; first: boolean; last: boolean }[] = [];
  if (nK > 1) {
    for (let mb = 0; mb < nM; mb++) {
      for (let nb = 0; nb < nN; nb++) {
        for (let k0 = 0; k0 < nK; k0 += lim.k) {
          const ps: Pair[] = [];
          for (let kb = k0; kb < Math.min(nK, k0 + lim.k); kb++) ps.push(block(mb, nb, kb));
          groupsOf.push({ map: "k", pairs: ps, first: k0 === 0, last: k0 + lim.k >= nK });
        }
      }
    }
  } else if (nM === 1 && nN > 1) {
    for (let n0 = 0; n0 < nN; n0 += lim.single) {
      const ps: Pair[] = [];
      for (let nb = n0; nb < Math.min(nN, n0 + lim.single); nb++) ps.push(block(0, nb, 0));
      groupsOf.push({ map: "cols", pairs: ps, first: true, last: true });
    }
  } else {
    for (let nb = 0; nb < nN; nb++) {
      for (let m0 = 0; m0 < nM; m0 += lim.single) {
        const ps: Pair[] = [];
        for (let mb = m0; mb < Math.min(nM, m0 + lim.single); mb++) ps.push(block(mb, nb, 0));
        groupsOf.push({ map: "rows", pairs: ps, first: true, last: true });
      }
    }
  }
  const map = groupsOf[0].map;
  // (a loop, not Math.max(...): a product of 65536 rows has more groups than the stack holds arguments)
  const np = groupsOf.reduce((m, g) => Math.max(m, g.pairs.length), 0);
  const dispatches: DispatchPlan[] = [];
  for (const g of groupsOf) {
    const aWins: WinRef[] = [], bWins: WinRef[] = [];
    const pairs: DispatchPlan["pairs"] = [];
    const aOff: number[] = [], bOff: number[] = [];
    for (const [w, q] of g.pairs.entries()) {
      const sa = spanA(transA, M, K, q.mLo, q.mHi, q.k0, q.kc);
      const sb = spanB(transB, N, K, q.nLo, q.nHi, q.k0, q.kc);
      const ai = map === "cols" ? 0 : w, bi = map === "rows" ? 0 : w;
      if (!aWins[ai]) aWins[ai] = { start: alignDown(sa.start, aBase), end: sa.end };
      if (!bWins[bi]) bWins[bi] = { start: alignDown(sb.start, bBase), end: sb.end };
      const aw = aWins[ai], bw = bWins[bi];
      aw.end = Math.max(aw.end, sa.end);
      bw.end = Math.max(bw.end, sb.end);
      if (sa.start < aw.start || sb.start < bw.start) return null;
      if (aw.end - aw.start > WINDOW || bw.end - bw.start > WINDOW) return null;
      pairs.push({ ...q, a: ai, b: bi });
      aOff.push(sa.start - aw.start);
      bOff.push(sb.start - bw.start);
    }
    const ps = g.pairs;
    dispatches.push({
      map,
      rowBase: Math.min(...ps.map((q) => q.mLo)),
      rowEnd: Math.max(...ps.map((q) => q.mHi)),
      colBase: Math.min(...ps.map((q) => q.nLo)),
      colEnd: Math.max(...ps.map((q) => q.nHi)),
      loadC: accumulate || !g.first,
      fin: g.last,
      pairs,
      aWins,
      bWins,
      aOff,
      bOff,
    });
  }
  return { np, map, dispatches };
}

const planCache = new Map<string, { plan: Plan; tile: WindowTile } | null>();

/**
 * The plan of one product (one batch entry) with the first tile that fits, cached; null when no tile
 * fits a window. `aBase`/`bBase`: the operands' float offsets modulo ALIGN where their windows are
 * bound from (0 for the staging area).
 */
export function windowPlan(
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  lim: PairLimits,
  aBase: number,
  bBase: number,
  accumulate: boolean,
): { plan: Plan; tile: WindowTile } | null {
  const key = `${transA ? "T" : "N"}${transB ? "T" : "N"} ${M}x${N}x${K}|${lim.single},${lim.k}|` +
    `${aBase},${bBase}|${accumulate}`;
  let found = planCache.get(key);
  if (found === undefined) {
    found = null;
    for (const tile of windowTiles(N, M)) {
      const plan = planWindows(M, N, K, transA, transB, tile, lim, aBase, bBase, accumulate);
      if (plan) {
        found = { plan, tile };
        break;
      }
    }
    planCache.set(key, found);
  }
  return found;
}

/** The shape of one product, as the dispatch counts take it. */
export interface ProductShape {
  /** Rows of C. */
  M: number;
  /** Columns of C. */
  N: number;
  /** Inner dimension. */
  K: number;
  /** A is stored [K, M]. */
  transA: boolean;
  /** B is stored [N, K]. */
  transB: boolean;
  /** Independent products. */
  batch: number;
}

/**
 * Dispatches the window kernel needs for a product of `batch` entries with staged operands (every
 * batch entry is planned alike) on an adapter with `ubos` uniform buffers per stage, or Infinity
 * when it cannot tile it.
 */
export function windowDispatches({ M, N, K, transA, transB, batch }: ProductShape, ubos: number): number {
  if (K === 0) return Infinity;
  const found = windowPlan(M, N, K, transA, transB, pairLimits(ubos), 0, 0, false);
  return found ? batch * found.plan.dispatches.length : Infinity;
}

/**
 * The most dispatches a window plan may take before the storage kernel does the product in one: the
 * lecture model's products plan into 1-7 with lavapipe's default 12 uniform buffers per stage (its
 * weight gradients split K over windows), nanoGPT-size products into tens to thousands.
 */
export const MAX_WINDOW_DISPATCHES = 8;

/**
 * Dispatches the CPU family records for a product (staged operands): the window plan's when it takes
 * at most MAX_WINDOW_DISPATCHES, else the storage kernel's one.
 */
export function cpuDispatches(shape: ProductShape, ubos: number): number {
  const w = windowDispatches(shape, ubos);
  return w <= MAX_WINDOW_DISPATCHES ? w : 1;
}
