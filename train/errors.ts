// The two ways a run stops on its own: the loss or the parameters stop being finite numbers, or a
// save fails (disk full, ...). Each error says what happened, where, and what is still on disk.

/** Training stopped because the loss or the parameters stopped being finite numbers. */
export class TrainingDiverged extends Error {
  override name = "TrainingDiverged";
}

/** The step and value of the first non-finite loss in `losses` (loss i is step firstStep + i), or null. */
export function firstNonFinite(
  losses: ArrayLike<number>,
  firstStep: number,
): { step: number; value: number } | null {
  for (let i = 0; i < losses.length; i++) {
    if (!Number.isFinite(losses[i])) return { step: firstStep + i, value: losses[i] };
  }
  return null;
}

/** What a checkpoint directory holds, for error messages: "the checkpoint of step 20 is kept in out". */
export function keptNote(lastSaved: number | null, out: string): string {
  return lastSaved === null
    ? "no checkpoint was written"
    : `the last good checkpoint, step ${lastSaved}, is kept in ${out}`;
}

/** The error for a diverged run: what went wrong, where, and which checkpoint is kept. */
export function divergedError(
  what: string,
  step: number,
  lastSaved: number | null,
  out: string,
): TrainingDiverged {
  return new TrainingDiverged(
    `training diverged: ${what} at step ${step}; stopped (${keptNote(lastSaved, out)}); try a lower --lr`,
  );
}

/**
 * The message for a failed write while saving `step`: what failed, then what is on disk. The resume
 * file is written before the model file, so if the model file failed the resume file holds `step`.
 */
export function saveFailedMessage(
  err: { file: string; message: string },
  step: number,
  lastSaved: number | null,
  files: { model: string; resume: string },
): string {
  const before = lastSaved === null ? "no checkpoint" : `the checkpoint of step ${lastSaved}`;
  const onDisk = err.file === files.model
    ? `${files.resume} holds step ${step} (--resume continues from it); ${files.model} ${
      lastSaved === null ? "was not written" : `still holds step ${lastSaved}`
    }`
    : err.file === files.resume
    ? `step ${step} was not saved; ${before} is on disk, unchanged`
    : `${before} is on disk`;
  return `${err.message} (at step ${step}); ${onDisk}`;
}
