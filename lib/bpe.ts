// GPT-2's byte-level BPE tokenizer (50257 tokens), from the npm package gpt-tokenizer (MIT, no
// dependencies; its r50k_base encoding is GPT-2's, vocabulary and merges shipped inside it). Runs in
// Deno and, bundled, in the page.
//
// "<|endoftext|>" in the text is plain text: encode gives the ids of its characters' BPE pieces (as
// nanoGPT's data preparation, tiktoken's encode_ordinary, does), never the special token 50256;
// decode turns id 50256 back into the string "<|endoftext|>". So no text is ever refused, and
// decode(encode(s)) === s for every string s.

// An inline, pinned specifier rather than an import-map entry: the CLIs also run without the project's
// deno.json (`deno run --no-config train.ts`, as tests/cli does), where a bare name would not resolve.
// deno-lint-ignore no-import-prefix
import { decode, encode } from "npm:gpt-tokenizer@4.0.0/encoding/r50k_base";
import { GPT2_VOCAB_SIZE, type TextTokenizer } from "./tokenizer.ts";

export { GPT2_VOCAB_SIZE };
/** The id of <|endoftext|>. */
export const GPT2_EOT = 50256;

const ORDINARY = { disallowedSpecial: new Set<string>() }; // special-token strings are plain text

/** GPT-2's byte-level BPE. */
export class Gpt2Tokenizer implements TextTokenizer {
  /** Which tokenizer this is. */
  readonly kind = "gpt2" as const;
  /** 50257. */
  readonly vocabSize: number = GPT2_VOCAB_SIZE;
  /** A BPE tokenizer has no character list (checkpoints record `tokenizer: gpt2` instead). */
  readonly chars: string[] = [];

  /** The BPE ids of `s` ("<|endoftext|>" as plain text). */
  encode(s: string): number[] {
    return encode(s, ORDINARY);
  }

  /** The text of `ids`; an id outside [0, 50257) is an Error. */
  decode(ids: ArrayLike<number>): string {
    for (let i = 0; i < ids.length; i++) {
      if (!Number.isInteger(ids[i]) || ids[i] < 0 || ids[i] >= GPT2_VOCAB_SIZE) {
        throw new Error(
          `token id ${ids[i]} at position ${i} is outside the vocabulary [0, ${GPT2_VOCAB_SIZE})`,
        );
      }
    }
    return decode(Array.from(ids));
  }
}
