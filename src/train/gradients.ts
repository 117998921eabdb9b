/**
 * Gradients of a scalar loss with respect to the model's variables, as tf.variableGrads takes them, with the memory
 * of a backward pass that frees as it goes.
 *
 * tfjs keeps every intermediate gradient and every tensor saved for the backward pass until the whole backward pass
 * has ended, so a step's peak holds all of the forward's saved activations plus the gradient of every intermediate
 * tensor at once (at 1.1B parameters, batch 2 x 1,024, tfjs held 52 GB on the device against PyTorch's 30 GB, and
 * batch 4 did not fit in 80 GB). Here the gradient of an op's outputs and the tensors the op saved are disposed as
 * soon as that op has been differentiated: in reverse tape order nothing later needs them.
 *
 * The walk is tfjs's own (engine.gradients and tape.ts, Apache-2.0): the forward is recorded on the engine's tape,
 * the tape is pruned to the ops on a path from the variables to the loss, and gradients are accumulated backwards.
 */
import * as tf from '@tensorflow/tfjs';

interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

/** The engine's tape and scoping, which tfjs does not export. */
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T>(name: string, f: () => T): T;
}

/** The tape's ops on some path from `xs` to `y`, each with only the inputs that depend on `xs`. */
function opsFromXsToY(tape: TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const opsFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((input) => fromX.has(input.id))) {
      opsFromX.add(node.id);
      for (const output of node.outputs) fromX.add(output.id);
    }
  }
  const toY = new Set([y.id]);
  const opsToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((output) => toY.has(output.id))) {
      opsToY.add(node.id);
      for (const input of Object.values(node.inputs)) toY.add(input.id);
    }
  }
  return tape
    .filter((node) => opsFromX.has(node.id) && opsToY.has(node.id))
    .map((node) => ({ ...node, inputs: Object.fromEntries(Object.entries(node.inputs).filter(([, input]) => fromX.has(input.id))) }));
}

/**
 * `f()` and its gradient with respect to each of `variables`, in their order (null for one the loss does not depend
 * on). Call under no other gradient (no higher-order gradients); the caller owns the value and the gradients.
 */
export function variableGradients(f: () => tf.Scalar, variables: readonly tf.Variable[]): { value: tf.Scalar; grads: (tf.Tensor | null)[] } {
  const engine = tf.engine() as unknown as EngineInternals;
  if (engine.state.gradientDepth !== 0) throw new Error('variableGradients cannot be nested inside another gradient');
  const value = engine.scopedRun(() => engine.startTape(), () => engine.endTape(), () => engine.tidy('forward', f));
  const tape = engine.state.activeTape ?? [];
  engine.state.activeTape = null;
  const grads = engine.tidy('backward', () => {
    // Tensor id -> its gradient. One gradient tensor may be held under several ids (handed on unchanged from an
    // output to an input): `holders` counts them, and a gradient is freed only once nothing holds it.
    const gradient = new Map<number, tf.Tensor>();
    const holders = new Map<tf.Tensor, number>();
    const hold = (id: number, t: tf.Tensor): void => {
      gradient.set(id, t);
      holders.set(t, (holders.get(t) ?? 0) + 1);
    };
    const drop = (id: number): void => {
      const t = gradient.get(id)!;
      gradient.delete(id);
      const left = holders.get(t)! - 1;
      if (left > 0) holders.set(t, left);
      else holders.delete(t);
    };
    const release = (t: tf.Tensor): void => {
      if (!holders.has(t)) t.dispose();
    };
    hold(value.id, tf.onesLike(value));
    for (const node of opsFromXsToY(tape, variables, value).reverse()) {
      if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
      const dys = node.outputs.map((output) => gradient.get(output.id) ?? null);
      const inputs = Object.entries(node.inputs);
      // One scope for the whole op: a custom gradient computes its input gradients when called, not when asked.
      const dxs = tf.tidy(() => {
        const inputGradients = node.gradient!(dys);
        return inputs.map(([name]) => inputGradients[name]());
      });
      inputs.forEach(([name, input], i) => {
        const dx = dxs[i];
        if (dx.dtype !== 'float32' || !tf.util.arraysEqual(dx.shape, input.shape)) {
          throw new Error(`the gradient of ${node.kernelName}'s input ${name} is ${dx.dtype} ${JSON.stringify(dx.shape)}, not float32 ${JSON.stringify(input.shape)}`);
        }
        const previous = gradient.get(input.id);
        if (!previous) return hold(input.id, dx);
        drop(input.id);
        hold(input.id, tf.add(previous, dx));
        [previous, dx].forEach(release);
      });
      // Done with this op: its outputs' gradients (a variable is never an op's output) and what it saved.
      for (const output of node.outputs) {
        const dy = gradient.get(output.id);
        if (!dy) continue;
        drop(output.id);
        release(dy);
      }
      tf.dispose(node.saved ?? []);
    }
    return variables.map((v) => gradient.get(v.id) ?? null);
  });
  for (const node of tape) tf.dispose(node.saved ?? []);
  return { value, grads };
}
