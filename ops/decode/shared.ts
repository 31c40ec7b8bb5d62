// What both decoding families share: the arguments their kernels take (checked by ../decode.ts).

import type { Bindings } from "../runtime.ts";

/** An out-of-range id's NaN, passed as a uniform word: WGSL rejects a NaN constant expression. */
export const NAN_BITS = 0x7fc00000;

/** attentionDecode's WGSL for (b, h) = bh: the cache offsets of head h's q in row (b, 0) and row (b, t). */
export const HEAD_ROWS = `
  let b = bh / p.H;
  let h = bh % p.H;
  let C = p.C;
  let C3 = 3u * C;
  let base = b * p.T * C3 + h * HS; // q of (b, 0), head h; + C for k, + 2C for v
  let row = base + p.t * C3;`;

/** attentionDecode's checked arguments: the bindings src (the new row or a placeholder), cache, out. */
export interface AttentionDecodeArgs {
  views: Bindings;
  B: number;
  T: number;
  C: number;
  H: number;
  /** Position of the query. */
  t: number;
  /** Head size C / H. */
  hs: number;
  /** Whether `src` holds the new row (written into cache row t first). */
  append: boolean;
}

/** addLayernorm's / embedLayernorm's checked arguments (embed: the views hold ids, positions, tok, pos). */
export interface LayernormDecodeArgs {
  embed: boolean;
  views: Bindings;
  rows: number;
  C: number;
  rStride: number;
  rOff: number;
  /** embed: the token table's rows. */
  V: number;
  /** embed: the position table's rows. */
  T: number;
  /** Every view starts at a 16-byte offset (the CPU family's vec4 rows). */
  aligned: boolean;
}
