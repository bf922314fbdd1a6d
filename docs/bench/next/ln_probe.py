import sys, os, collections, torch
sys.path.insert(0, os.getcwd())
import model, bench
from clip_parallel import parallel_temporal_layers, clip_forward, compile_layers, EmulatedComm, EmulatedGroup
from dual_scope import DualScope
from simulate import randomize
from torch._inductor.compile_fx import compile_fx
torch.set_grad_enabled(False)
dev = torch.device("cuda")
with torch.device(dev):
    unet = randomize(model.UNet(**model.VC2_CONFIG["unet"]).eval(), 0)
graphs = []
def backend(gm, inputs):
    ops = [str(n.target) for n in gm.graph.nodes if n.op in ("call_function", "call_method", "call_module")]
    graphs.append(ops)
    return compile_fx(gm, inputs)
compile_layers(unet)
for m in unet.modules():
    if isinstance(m, model.TemporalTransformer):
        m.forward = torch.compile(m.forward, dynamic=False, backend=backend)
n = 16
x = torch.randn(2, 4, n, 40, 64, device=dev, dtype=torch.bfloat16); t = torch.full((2,), 901, device=dev)
ctx = torch.randn(2, 77, 1024, device=dev, dtype=torch.bfloat16)
unet.to(torch.bfloat16)
with parallel_temporal_layers(unet, DualScope()):
    for _ in range(2):
        clip_forward(unet, EmulatedComm(EmulatedGroup(1), 0), n, x, t, ctx, 24)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        clip_forward(unet, EmulatedComm(EmulatedGroup(1), 0), n, x, t, ctx, 24); torch.cuda.synchronize()
ln = [g for g in graphs if any("layer_norm" in s for s in g)]
print(len(graphs), "graphs via the TT backend;", len(ln), "with layer_norm")
for g in ln[:5]: print("  ", len(g), [s.split(" at ")[0] for s in g[:8]])
print({k: dict(v) for k, v in torch._dynamo.utils.counters.items() if k in ("frames", "stats", "unimplemented")})
br = torch._dynamo.utils.counters["graph_break"]
for r, c in list(br.items())[:6]: print("break", c, str(r)[:160].replace("\n", " "))
names = collections.Counter()
for e in prof.events():
    if "layer_norm" in e.name: names[e.name[:80]] += 1
print(names)
