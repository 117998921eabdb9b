/** SwiGLU: silu(gate) * up, element-wise, with a hand-written gradient; one kernel each way where registered (webgpu). */
import * as tf from '@tensorflow/tfjs';
import { hasKernel } from './registry.ts';

type Saver = tf.GradSaveFunc;

export function swiglu(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  if (!hasKernel('ArlSwiGlu')) return swigluOps(gate, up);
  const fused = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [g, u] = args as tf.Tensor[];
    const save = args[2] as Saver;
    save([g, u]);
    return {
      value: tf.engine().runKernel('ArlSwiGlu', { gate: g, up: u }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.engine().runKernel('ArlSwiGluGrad', { gate: saved[0], up: saved[1], dy }) as tf.Tensor[],
    };
  });
  return fused(gate, up) as tf.Tensor2D;
}

/** swiglu with tfjs ops (and the reference the kernels are tested against). */
export function swigluOps(gate: tf.Tensor2D, up: tf.Tensor2D): tf.Tensor2D {
  const op = tf.customGrad((...args: (tf.Tensor | Saver)[]) => {
    const [g, u] = args as tf.Tensor[];
    const save = args[2] as Saver;
    const sig = tf.sigmoid(g);
    const silu = tf.mul(g, sig);
    const value = tf.mul(silu, u);
    save([g, u, sig]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [gs, us, s] = saved;
        const dUp = tf.mul(dy, tf.mul(gs, s));
        // silu'(g) = s + g s (1 - s) = s (1 + g (1 - s))
        const dSilu = tf.mul(s, tf.add(1, tf.mul(gs, tf.sub(1, s))));
        const dGate = tf.mul(tf.mul(dy, us), dSilu);
        return [dGate, dUp];
      },
    };
  });
  return op(gate, up) as tf.Tensor2D;
}
