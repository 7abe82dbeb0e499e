import sys; sys.path.insert(0, "tests")
import torch, copy
from minipeft import models
from minipeft.lora import apply_lora, merge_lora
from method_checks import outputs, perturb_trainable, row
m, tok = models.load_causal_lm()
batch = dict(tok(["The movie was a delight from start to finish.", "Dull."], return_tensors="pt", padding=True))
b = outputs(m, batch); print("logit absmax", b.abs().max().item())
print("row-alone noise", (outputs(m, row(batch, 0)) - b[:1]).abs().max().item())
for scale in (0.05, 0.01, 0.001):
    mm = copy.deepcopy(m); apply_lora(mm, ["q_proj", "v_proj"], r=8); perturb_trainable(mm, scale)
    u = outputs(mm, batch); merge_lora(mm); g = outputs(mm, batch)
    print(scale, (u - b).abs().max().item(), (g - u).abs().max().item())
md = copy.deepcopy(m).double(); apply_lora(md, ["q_proj", "v_proj"], r=8); perturb_trainable(md, 0.05)
with torch.no_grad():
    for p in md.parameters():
        if p.requires_grad: p.copy_(p.double())
u = outputs(md, batch); merge_lora(md); print("double", (outputs(md, batch) - u).abs().max().item())
