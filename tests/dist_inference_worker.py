"""Worker for tests/test_inference_dist.py: run under torchrun (gloo) and compare with single-process inference."""
import json
import sys

import torch
import torch.distributed as dist

from monst3r.image_pairs import make_pairs
from monst3r.inference import inference, inference_distributed
from monst3r.model import model_from_string

dist.init_process_group("gloo")
torch.manual_seed(0)
model = model_from_string(sys.argv[1], for_inference=True).eval()
g = torch.Generator().manual_seed(1)
views = [dict(img=torch.rand(1, 3, 32, 64, generator=g) * 2 - 1, true_shape=torch.tensor([[32, 64]], dtype=torch.int32),
              idx=i, instance=str(i)) for i in range(6)]
pairs = make_pairs(views, "swin-2-noncyclic", symmetrize=True)
out = inference_distributed(pairs, model, "cpu", batch_size=3, verbose=False)
ref = inference(pairs, model, "cpu", batch_size=3, verbose=False)
ok = out["view1"]["idx"] == ref["view1"]["idx"] and all(
    torch.allclose(out[s][k], ref[s][k], atol=1e-5) for s, k in
    (("pred1", "pts3d"), ("pred1", "conf"), ("pred2", "pts3d_in_other_view")))
if dist.get_rank() == 0:
    print(json.dumps({"ok": bool(ok), "pairs": len(out["view1"]["idx"]), "world": dist.get_world_size()}))
dist.destroy_process_group()
