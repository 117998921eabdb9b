# Are two safetensors checkpoints the same weights? Every tensor of REF (one folder of *.safetensors) must be in
# OURS with equal values (compared in REF's dtype and shape). numpy only; tensors are memory-mapped, not loaded whole.
#   python3 scripts/compare-safetensors.py /tmp/tl /tmp/ck
import glob, json, struct, sys
import numpy as np
DTYPES = {'F32': np.float32, 'F16': np.float16, 'I32': np.int32, 'I64': np.int64}
def tensors(folder):
    found = {}
    for path in sorted(glob.glob(f'{folder}/*.safetensors')):
        with open(path, 'rb') as f:
            n = struct.unpack('<Q', f.read(8))[0]
            header = json.loads(f.read(n))
        data = np.memmap(path, dtype=np.uint8, mode='r', offset=8 + n)
        for name, t in header.items():
            if name == '__metadata__': continue
            if t['dtype'] == 'BF16':
                raw = data[t['data_offsets'][0]:t['data_offsets'][1]].view(np.uint16).astype(np.uint32) << 16
                found[name] = raw.view(np.float32).reshape(t['shape'])
            else:
                found[name] = data[t['data_offsets'][0]:t['data_offsets'][1]].view(DTYPES[t['dtype']]).reshape(t['shape'])
    return found
ref, ours = tensors(sys.argv[1]), tensors(sys.argv[2])
bad = [k for k in ref if k not in ours or ours[k].size != ref[k].size or not np.array_equal(ref[k], ours[k].astype(ref[k].dtype).reshape(ref[k].shape))]
print(json.dumps({'tensors': len(ref), 'ours': len(ours), 'unequal_or_missing': len(bad), 'first': bad[:5]}))
sys.exit(1 if bad else 0)
