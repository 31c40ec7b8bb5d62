// tinygpt-webgpu: character-level language models trained with WGSL compute kernels on WebGPU.
// Public API: tokenizer and data, the runtime and tensors, every op (forward + backward), the models,
// optimizers and checkpoints.

export { Tokenizer } from "./lib/tokenizer.ts";
export { bigramEntropy, GPTData, idPairs, loadText, oneHotPairs } from "./lib/data.ts";
export { Rng } from "./lib/rng.ts";
export { CheckpointError, decodeSafetensors, encodeSafetensors } from "./lib/safetensors.ts";

export { f32, getRuntime, GPUFailure, Runtime } from "./ops/runtime.ts";
export { ParamStore, Tensor } from "./ops/tensor.ts";
export * from "./ops/matmul.ts";
export * from "./ops/embedding.ts";
export * from "./ops/layernorm.ts";
export * from "./ops/attention.ts";
export * from "./ops/activation.ts";
export * from "./ops/dropout.ts";
export * from "./ops/elementwise.ts";
export * from "./ops/cross_entropy.ts";
export * from "./ops/optim.ts";

export { GPT, GPT_REFERENCE, GPTActivations, type GPTConfig } from "./models/gpt.ts";
export { BigramActivations, BigramEmbeddingMLP, BigramMLP, BigramOneHotMLP } from "./models/bigram.ts";
export { filteredProbs, LossHistory, Optimizer, sampleLogits, StepState } from "./models/common.ts";
export { loadModel, loadOptim, saveModel, saveOptim } from "./models/checkpoint.ts";
