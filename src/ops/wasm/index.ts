/** Registers our kernels for the wasm backend over (or beside) its own. */
import { registerKernels, replaceKernel } from '../registry.ts';
import { cast, gatherV2, identity, unsortedSegmentSum } from './kernels.ts';
import { slice, transpose } from './layout.ts';
import { batchMatMul } from './matmul.ts';

let registered = false;

/** Registers the kernels (idempotent); call once the wasm backend is loaded. */
export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  registerKernels('wasm', [['UnsortedSegmentSum', unsortedSegmentSum]]);
  replaceKernel('BatchMatMul', 'wasm', batchMatMul);
  replaceKernel('Identity', 'wasm', identity);
  replaceKernel('Cast', 'wasm', cast);
  replaceKernel('GatherV2', 'wasm', gatherV2);
  replaceKernel('Slice', 'wasm', slice);
  replaceKernel('Transpose', 'wasm', transpose);
}
