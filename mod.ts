// tinygpt-webgpu: GPT language models (characters or GPT-2's BPE) trained with WGSL compute kernels on
// WebGPU, and Hugging Face GPT-2 in and out.
// Public API: tokenizer and data, the runtime and tensors, every op (forward + backward), the models,
// optimizers and checkpoints (as bytes). Everything here runs in a browser as well as in Deno; the Deno
// file helpers (loadText, readModelCheckpoint, saveCheckpoint, ...) are in models/files.ts.

export {
  GPT2_VOCAB_SIZE,
  StreamDecoder,
  type TextTokenizer,
  Tokenizer,
  type TokenizerKind,
  TOKENIZERS,
} from "./lib/tokenizer.ts";
export { GPT2_EOT, Gpt2Tokenizer } from "./lib/bpe.ts";
export { bigramEntropy, decodeText, GPTData, idPairs, oneHotPairs } from "./lib/data.ts";
export { fail, UsageError } from "./lib/errors.ts";
export { Rng } from "./lib/rng.ts";
export {
  CheckpointError,
  decodeSafetensors,
  type Dtype,
  encodeSafetensors,
  f16ToNumber,
  type StoredTensor,
} from "./lib/safetensors.ts";

export {
  type BindingDecl,
  type Bindings,
  type BufferView,
  type CapturedDispatch,
  type CompiledKernel,
  f32,
  getRuntime,
  GPUFailure,
  grid1d,
  isCpuAdapter,
  KERNEL_FAMILIES,
  type KernelFamily,
  LLVMPIPE_LOOP_LIMIT,
  type Param,
  type RecordedOp,
  type Recording,
  Runtime,
  type RuntimeStats,
  type TimedKernel,
  type TracedKernel,
} from "./ops/runtime.ts";
export { type DType, type ParamShard, ParamStore, Tensor } from "./ops/tensor.ts";
export * from "./ops/matmul.ts";
export * from "./ops/embedding.ts";
export * from "./ops/layernorm.ts";
export * from "./ops/attention.ts";
export * from "./ops/activation.ts";
export * from "./ops/dropout.ts";
export * from "./ops/elementwise.ts";
export * from "./ops/cross_entropy.ts";
export * from "./ops/optim.ts";

export {
  type Activation,
  ACTIVATIONS,
  archProblem,
  COURSE_ARCH,
  GPT,
  GPT2_ARCH,
  GPT_REFERENCE,
  GPTActivations,
  type GPTArch,
  gptArch,
  type GPTConfig,
  type GPTInit,
  type LayerActs,
  NANOGPT_ARCH,
} from "./models/gpt.ts";
export {
  exportHFGpt2,
  exportProblem,
  HF_CHARS,
  HF_CONFIG,
  HF_WEIGHTS,
  type HFImportOptions,
  type HFModel,
  importHFGpt2,
  parseHFConfig,
} from "./models/hf_gpt2.ts";
export { type DecodeOptions, DEFAULT_CHUNK, GPTDecoder } from "./models/gpt_decode.ts";
export {
  BigramActivations,
  type BigramConfig,
  BigramEmbeddingMLP,
  type BigramKind,
  BigramMLP,
  BigramOneHotMLP,
} from "./models/bigram.ts";
export {
  DECAY_PARAMS,
  type DecayParams,
  decays,
  filteredProbs,
  type GenerateOptions,
  LossHistory,
  Optimizer,
  type OptimizerKind,
  type OptimizerOptions,
  sampleLogits,
  StepState,
} from "./models/common.ts";
export {
  type AnyConfig,
  type AnyModel,
  buildModel,
  checkpointBytes,
  type CheckpointData,
  encodeModelCheckpoint,
  modelBytes,
  type ModelKind,
  parseModelCheckpoint,
  parseResume,
  type ResumeData,
  type TokenizerInfo,
  type TrainState,
} from "./models/checkpoint.ts";
