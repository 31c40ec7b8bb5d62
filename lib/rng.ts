// Seeded, serialisable PRNG (xoshiro128**, seeded by splitmix32). Same seed => same stream on every
// platform; `state()`/`fromState()` let `--resume` continue the exact stream.

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** Seeded xoshiro128** generator: the same seed gives the same stream everywhere. */
export class Rng {
  private s: Uint32Array;
  private spare: number | null = null;

  /** A generator seeded (via splitmix32) from a 32-bit `seed`. */
  constructor(seed = 0) {
    const sm = splitmix32(seed);
    this.s = new Uint32Array([sm(), sm(), sm(), sm()]);
    if (this.s.every((x) => x === 0)) this.s[0] = 1;
  }

  /** A generator continuing from a `state()` snapshot. */
  static fromState(state: readonly number[]): Rng {
    if (state.length !== 4) throw new Error("Rng state must have 4 words");
    const r = new Rng(0);
    r.s = new Uint32Array(state);
    return r;
  }

  /** The 4-word state, to continue the exact stream with `fromState`. */
  state(): number[] {
    return Array.from(this.s);
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Float32Array of n draws from U(lo, hi). */
  uniformArray(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.range(lo, hi);
    return a;
  }

  /** Float32Array of n draws from N(0, std²). */
  normalArray(n: number, std = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = std * this.normal();
    return a;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
