// tinygpt-webgpu: character-level language models trained with WGSL compute kernels on WebGPU.
// Public API: tokenizer and data, the runtime and tensors, every op (forward + backward), the models,
// optimizers and checkpoints (as bytes). Everything here runs in a browser as well as in Deno; the Deno
// file helpers (loadText, readModelCheckpoint, saveCheckpoint, ...) are in lib/files.ts.

export { Tokenizer } from "./lib/tokenizer.ts";
export { bigramEntropy, decodeText, GPTData, idPairs, oneHotPairs } from "./lib/data.ts";
export { fail, UsageError } from "./lib/errors.ts";
export { Rng } from "./lib/rng.ts";
export {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
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
  type Param,
  type RecordedOp,
  type Recording,
  Runtime,
  type RuntimeStats,
  type TimedKernel,
  type TracedKernel,
} from "./ops/runtime.ts";
export { type DType, ParamStore, Tensor } from "./ops/tensor.ts";
export * from "./ops/matmul.ts";
export * from "./ops/embedding.ts";
export * from "./ops/layernorm.ts";
export * from "./ops/attention.ts";
export * from "./ops/activation.ts";
export * from "./ops/dropout.ts";
export * from "./ops/elementwise.ts";
export * from "./ops/cross_entropy.ts";
export * from "./ops/optim.ts";

export { GPT, GPT_REFERENCE, GPTActivations, type GPTConfig, type LayerActs } from "./models/gpt.ts";
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
  type TrainState,
} from "./models/checkpoint.ts";
