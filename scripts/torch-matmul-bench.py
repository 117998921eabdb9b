# PyTorch's side of scripts/matmul-bench.ts: cuBLAS fp32 (no TF32) at the products of a 1.1B training step, and where
# the HF Llama step's GPU time goes (torch.profiler), so our product kernel and our step can be set against both.
#
#   python3 scripts/torch-matmul-bench.py                 (GPU box; PRODUCTS, ITER, BATCHES as in matmul-bench.ts)
#   STEP=1 python3 scripts/torch-matmul-bench.py          (also profile one 1.1B HF Llama step: V D L H KV F T B as in
#                                                          ../shared/bench/torch_llama_bench.py, default TinyLlama's)
#
# Prints JSON lines: per product {"bench":"torch-matmul","product","ms","tflops"} (the fastest batch's mean), and with
# STEP=1 one {"bench":"torch-step-profile"} line: the step's CUDA kernel ms in all and by kind (products, attention's
# softmax, optimizer, the rest), with the products' share.
import json, os, re, sys, torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
env = lambda k, d: int(os.environ.get(k, d))

# The weights' products of the 1.1B step, as in matmul-bench.ts: y = x W forward (nn), input gradient (nt), weight gradient (tn).
def projection(tokens, inner, outer):
    return [f'{tokens}x{inner}x{outer}:nn', f'{tokens}x{outer}x{inner}:nt', f'{inner}x{tokens}x{outer}:tn']

DEFAULT = [*projection(4096, 2048, 2560), *projection(4096, 2048, 2048), *projection(4096, 2048, 5632), *projection(4096, 5632, 2048),
           '4096x2048x32000:nn', '4096x32000x2048:nt', '2048x4096x32000:tn']

def operands(spec):
    match = re.fullmatch(r'(\d+)x(\d+)x(\d+):([nt])([nt])', spec)
    if not match:
        print(f'torch-matmul-bench: PRODUCTS: "{spec}" is not MxKxN:tt (tt one of nn, nt, tn, tt)', file=sys.stderr)
        sys.exit(2)
    m, k, n = (int(match[i]) for i in (1, 2, 3))
    a = torch.randn(k, m, device='cuda').t() if match[4] == 't' else torch.randn(m, k, device='cuda')
    b = torch.randn(n, k, device='cuda').t() if match[5] == 't' else torch.randn(k, n, device='cuda')
    return a, b, 2 * m * n * k

def time_products(specs, iters, batches):
    for spec in specs:
        a, b, flop = operands(spec)
        out = torch.empty(a.shape[0], b.shape[1], device='cuda')
        torch.matmul(a, b, out=out)
        best = float('inf')
        for _ in range(batches):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                torch.matmul(a, b, out=out)
            end.record()
            torch.cuda.synchronize()
            best = min(best, start.elapsed_time(end) / iters)
        print(json.dumps({'bench': 'torch-matmul', 'product': spec, 'ms': round(best, 3), 'tflops': round(flop / best / 1e9, 1)}), flush=True)
        del a, b, out

def profile_step():
    from transformers import LlamaConfig, LlamaForCausalLM
    V, D, L, H, KV, F, T, B = (env(k, d) for k, d in [('V', 32000), ('D', 2048), ('L', 22), ('H', 32), ('KV', 4), ('F', 5632), ('T', 1024), ('B', 4)])
    cfg = LlamaConfig(vocab_size=V, hidden_size=D, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=KV,
                      intermediate_size=F, max_position_embeddings=T, tie_word_embeddings=bool(env('TIE', 0)))
    cfg._attn_implementation = os.environ.get('ATTN', 'eager')
    model = LlamaForCausalLM(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, V, (B, T), device='cuda')
    def step():
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    for _ in range(2):
        step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kinds = {'products': 0.0, 'softmax': 0.0, 'optimizer': 0.0, 'rest': 0.0}
    for event in prof.key_averages():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        ms = getattr(event, 'self_device_time_total', None) or event.self_cuda_time_total
        ms /= 1000
        name = event.key.lower()
        kind = 'products' if re.search(r'gemm|xmma|cutlass|sm\d+_', name) else 'softmax' if 'softmax' in name else 'optimizer' if re.search(r'adam|multi_tensor|foreach', name) else 'rest'
        kinds[kind] += ms
    total = sum(kinds.values())
    print(json.dumps({'bench': 'torch-step-profile', 'shape': dict(V=V, D=D, L=L, H=H, KV=KV, F=F, T=T, B=B), 'attn': cfg._attn_implementation,
                      'kernel_ms': round(total, 1), **{f'{k}_ms': round(v, 1) for k, v in kinds.items()}, 'products_share': round(kinds['products'] / total, 3)}), flush=True)

specs = os.environ.get('PRODUCTS', ' '.join(DEFAULT)).split()
time_products(specs, env('ITER', 10), env('BATCHES', 3))
if os.environ.get('STEP') == '1':
    profile_step()
