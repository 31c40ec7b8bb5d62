// Character-level tokenizer: the vocabulary is the sorted set of characters (Unicode code points,
// ordered by code point like Python's sorted(set(text))); ids are positions in that list. Strings are
// split by code point, so an astral character (e.g. an emoji) is one token, not two surrogates.
// `TextTokenizer` is what the models' users need of any tokenizer (GPT-2's BPE is lib/bpe.ts).

import { UsageError } from "./errors.ts";

/** At most this many unknown characters are listed in encode's error message. */
const MAX_LISTED = 10;

/** The tokenizers: characters of the data (the default) or GPT-2's byte-level BPE. */
export type TokenizerKind = "char" | "gpt2";
/** The `--tokenizer` choices. */
export const TOKENIZERS: readonly TokenizerKind[] = ["char", "gpt2"];

/** GPT-2's vocabulary size (50256 BPE merges and bytes plus <|endoftext|>; the tokenizer is lib/bpe.ts). */
export const GPT2_VOCAB_SIZE = 50257;

/** What training and sampling need of a tokenizer. */
export interface TextTokenizer {
  /** Which tokenizer. */
  readonly kind: TokenizerKind;
  /** Number of ids. */
  readonly vocabSize: number;
  /** The character list of a char tokenizer (what checkpoints store as `vocab`); [] for BPE. */
  readonly chars: string[];
  /** Ids of `s`. */
  encode(s: string): number[];
  /** The text of `ids`. */
  decode(ids: ArrayLike<number>): string;
}

/** Character-level tokenizer: ids are positions in the sorted character list. */
export class Tokenizer implements TextTokenizer {
  /** Which tokenizer this is. */
  readonly kind = "char" as const;
  /** The vocabulary: `chars[id]` is the character with that id. */
  readonly chars: string[];
  private readonly index: Map<string, number>;

  /** `chars[i]` is the character with id i; each must be a single code point, all distinct. */
  constructor(chars: string[]) {
    this.index = new Map();
    chars.forEach((c, i) => {
      if (typeof c !== "string" || Array.from(c).length !== 1) {
        throw new Error(`vocabulary entry ${i} is not a single character: ${JSON.stringify(c)}`);
      }
      if (this.index.has(c)) throw new Error(`vocabulary has a duplicate character ${JSON.stringify(c)}`);
      this.index.set(c, i);
    });
    this.chars = [...chars];
  }

  /** The sorted unique characters of `text`. */
  static fromText(text: string): Tokenizer {
    const set = Array.from(new Set(Array.from(text)));
    set.sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    return new Tokenizer(set);
  }

  /** Number of characters in the vocabulary. */
  get vocabSize(): number {
    return this.chars.length;
  }

  /** Ids of the characters of `s`; characters outside the vocabulary are a UsageError listing them. */
  encode(s: string): number[] {
    const out: number[] = [];
    const unknown = new Set<string>();
    for (const c of s) {
      const id = this.index.get(c);
      if (id === undefined) unknown.add(c);
      else out.push(id);
    }
    if (unknown.size > 0) {
      const list = [...unknown].slice(0, MAX_LISTED).map((c) => JSON.stringify(c)).join(", ");
      const more = unknown.size > MAX_LISTED ? ` and ${unknown.size - MAX_LISTED} more` : "";
      throw new UsageError(`characters not in the vocabulary: ${list}${more}`);
    }
    return out;
  }

  /** The string for `ids`; an id that is not an integer in [0, vocabSize) is an Error. */
  decode(ids: ArrayLike<number>): string {
    let s = "";
    for (let i = 0; i < ids.length; i++) {
      const c = this.chars[ids[i]];
      if (!Number.isInteger(ids[i]) || c === undefined) {
        throw new Error(
          `token id ${ids[i]} at position ${i} is outside the vocabulary [0, ${this.vocabSize})`,
        );
      }
      s += c;
    }
    return s;
  }
}

/**
 * Text of ids as they arrive, for streaming output: a BPE token may end inside a multi-byte UTF-8
 * character, so ids wait (up to 4) until their text no longer ends in U+FFFD, the replacement
 * character of an incomplete sequence. `flush` returns what is left.
 */
export class StreamDecoder {
  private pending: number[] = [];

  /** Decode with `tok`. */
  constructor(private readonly tok: TextTokenizer) {}

  /** The new text after `id` ("" while a character is incomplete). */
  push(id: number): string {
    this.pending.push(id);
    const s = this.tok.decode(this.pending);
    if (s.endsWith("\uFFFD") && this.pending.length < 4) return "";
    this.pending = [];
    return s;
  }

  /** Whatever is still pending. */
  flush(): string {
    const s = this.pending.length ? this.tok.decode(this.pending) : "";
    this.pending = [];
    return s;
  }
}
