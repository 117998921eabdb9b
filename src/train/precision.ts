/**
 * The precision of a run's large products. Mixed precision is opt-in and checked: the f16
 * tensor-core matmul must exist on this device and agree with f32 there (the self-check), or the
 * run is refused with one line; it never falls back to fp32 unasked.
 */
import { UserError } from '../io/errors.ts';
import { matmulPrecision, type Precision, setMatmulPrecision } from '../ops/matmul.ts';
import { hasKernel } from '../ops/registry.ts';
import { mixedPrecisionSupport } from '../ops/webgpu/mixed-precision.ts';

let lastDetail: string | null = null;

/**
 * Sets the products' precision (on the backend already started): for 'mixed', only after the
 * self-check passes, else throws a UserError naming what is missing. Returns the check's summary,
 * or null for fp32.
 */
export async function usePrecision(precision: Precision): Promise<string | null> {
  if (precision === 'mixed' && matmulPrecision() === 'mixed' && lastDetail !== null) return lastDetail; // checked already in this process
  setMatmulPrecision('fp32');
  if (precision === 'fp32') return null;
  const support = await mixedPrecisionSupport();
  if (!support.ok) throw new UserError(`--precision mixed: ${support.reason}`);
  if (!hasKernel('ArlMatMulF16')) throw new UserError('--precision mixed: our webgpu kernels are switched off (ARL_STOCK_WEBGPU=1), so the products would stay fp32');
  setMatmulPrecision('mixed');
  lastDetail = support.detail;
  return support.detail;
}
