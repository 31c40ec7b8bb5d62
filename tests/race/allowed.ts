// The findings the race check ignores: one entry per kernel and variable, each with its reason. An
// entry that no longer matches a finding fails the check (so this list cannot go stale).

/** A finding the race check ignores. */
export interface Allowed {
  /** The kernel family whose check it belongs to. */
  family: "gpu" | "cpu";
  /** The dispatch label (a prefix: "matmul" matches every product). */
  kernel: string;
  /** The variable (binding or workgroup array) of the finding. */
  variable: string;
  /** The finding's kind (./detector.ts Finding). */
  kind: "race" | "oob" | "divergence" | "mismatch" | "error";
  /** Why it is not a defect. */
  reason: string;
}

export const ALLOWED: Allowed[] = [];
