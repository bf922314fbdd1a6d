"""Device probe: micro-benchmarks that decide the layout / fusion design (not part of the repo)."""
import json, os, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
from triton.testing import do_bench
sys.path.insert(0, os.getcwd())
import model
torch.backends.cudnn.benchmark = True
torch.set_grad_enabled(False)
dev, dt = "cuda", torch.bfloat16
R = {}
def t(name, fn):
    fn(); torch.cuda.synchronize()
    R[name] = do_bench(fn, warmup=20, rep=80, return_mode="median"); print(f"{name:40s} {R[name]:8.3f} ms", flush=True)
print(torch.__version__, torch.cuda.get_device_name(), torch.backends.cudnn.version(), flush=True)
CL = torch.channels_last
N, C, H, W = 256, 320, 40, 64
x = torch.randn(N, C, H, W, device=dev, dtype=dt); xcl = x.contiguous(memory_format=CL)
gb = x.numel() * 2 / 1e9
t("copy_clone (2 passes)", lambda: x.clone()); R["bw_TBps"] = 2 * gb / R["copy_clone (2 passes)"] / 1e3 * 1e3 / 1e3
print("bandwidth TB/s", 2 * gb / (R["copy_clone (2 passes)"] * 1e-3) / 1e3)
gn = nn.GroupNorm(32, C).to(dev, dt)
t("gn_nchw", lambda: F.group_norm(x, 32, gn.weight, gn.bias))
R["gn_cl_out_cl"] = F.group_norm(xcl, 32, gn.weight, gn.bias).is_contiguous(memory_format=CL); print("gn cl out cl", R["gn_cl_out_cl"])
t("gn_cl", lambda: F.group_norm(xcl, 32, gn.weight, gn.bias))
t("silu_nchw", lambda: F.silu(x))
conv = nn.Conv2d(C, C, 3, padding=1).to(dev, dt)
t("conv3x3_nchw", lambda: conv(x))
convcl = nn.Conv2d(C, C, 3, padding=1).to(dev, dt).to(memory_format=CL)
t("conv3x3_cl", lambda: convcl(xcl)); R["conv_cl_out_cl"] = convcl(xcl).is_contiguous(memory_format=CL)
print("conv TFLOP/s cl", 2 * 9 * C * C * H * W * N / R["conv3x3_cl"] / 1e9, "nchw", 2 * 9 * C * C * H * W * N / R["conv3x3_nchw"] / 1e9)
# temporal conv (3,1,1) on (2, 320, 128, 40, 64)
b, n = 2, 128
x5 = torch.randn(b, n, H, W, C, device=dev, dtype=dt).permute(0, 4, 1, 2, 3)  # NDHWC memory
c3 = nn.Conv3d(C, C, (3, 1, 1), padding=(1, 0, 0)).to(dev, dt).to(memory_format=torch.channels_last_3d)
t("conv311_ndhwc", lambda: c3(x5)); R["conv311_out_ndhwc"] = c3(x5).is_contiguous(memory_format=torch.channels_last_3d)
x5c = x5.contiguous()
c3b = nn.Conv3d(C, C, (3, 1, 1), padding=(1, 0, 0)).to(dev, dt)
t("conv311_ncdhw", lambda: c3b(x5c))
xtok = x5.permute(0, 2, 3, 4, 1).reshape(b, n * H * W, C)  # (b, n hw, c) contiguous
Wk = torch.randn(3, C, C, device=dev, dtype=dt)
def three_mm():
    xp = F.pad(xtok, (0, 0, H * W, H * W))
    out = torch.matmul(xp[:, :n * H * W], Wk[0])
    out.baddbmm_(xp[:, H * W:(n + 1) * H * W], Wk[1].expand(b, C, C))
    out.baddbmm_(xp[:, 2 * H * W:], Wk[2].expand(b, C, C))
    return out
t("conv311_three_mm", three_mm)
print("conv311 TFLOP/s ndhwc", 2 * 3 * C * C * H * W * n * b / R["conv311_ndhwc"] / 1e9)
# group norm stats on (b, L, c) tokens + fused apply+silu (compiled)
tok = xtok
t("stats_sum_f32", lambda: tok.view(b, -1, 32, C // 32).sum((1, 3), dtype=torch.float32))
t("stats_sumsq_f32", lambda: torch.linalg.vector_norm(tok.view(b, -1, 32, C // 32), 2, (1, 3), dtype=torch.float32))
scale = torch.rand(b, 1, C, device=dev); shift = torch.rand(b, 1, C, device=dev)
def apply_silu(x, scale, shift):
    return F.silu(x.float() * scale + shift).to(x.dtype)
t("apply_silu_eager", lambda: apply_silu(tok, scale, shift))
t0 = time.time(); comp = torch.compile(apply_silu, dynamic=True); comp(tok, scale, shift); torch.cuda.synchronize(); R["compile_s_apply"] = time.time() - t0
t("apply_silu_compiled", lambda: comp(tok, scale, shift))
comp(tok[:, :1000], scale, shift); comp(torch.randn(2, 5000, 640, device=dev, dtype=dt), torch.rand(2, 1, 640, device=dev), torch.rand(2, 1, 640, device=dev))
def stats(x, g):
    xg = x.view(x.shape[0], -1, g, x.shape[-1] // g).float()
    return xg.sum((1, 3)), xg.square().sum((1, 3))
t0 = time.time(); cstats = torch.compile(stats, dynamic=True); cstats(tok, 32); torch.cuda.synchronize(); R["compile_s_stats"] = time.time() - t0
t("stats_compiled_sum_sumsq", lambda: cstats(tok, 32))
print("1 pass of tok ms (floor)", tok.numel() * 2 / 4.3e12 * 1e3)
# SDPA spatial: (256, 5, 2560, 64)
q = torch.randn(256, 2560, 5, 64, device=dev, dtype=dt).transpose(1, 2)
from torch.nn.attention import sdpa_kernel, SDPBackend
for be in [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]:
    try:
        with sdpa_kernel([be]):
            t(f"sdpa_{be.name}", lambda: F.scaled_dot_product_attention(q, q, q))
    except Exception as e:
        print(be, "failed", repr(e)[:200])
t("sdpa_default", lambda: F.scaled_dot_product_attention(q, q, q))
print("sdpa TFLOP/s default", 4 * 2560 * 2560 * 320 * 256 / R["sdpa_default"] / 1e9)
# whole modules: SpatialTransformer and a ResBlock (no temporal), eager nchw / eager cl / compiled cl
st = model.SpatialTransformer(C, 5, 64, 1024).to(dev, dt).eval()
ctx = torch.randn(N, 77, 1024, device=dev, dtype=dt)
t("ST_eager_nchw", lambda: st(x, ctx))
t("ST_eager_cl", lambda: st(xcl, ctx)); R["ST_out_cl"] = st(xcl, ctx).is_contiguous(memory_format=CL)
rb = model.ResBlock(C, 1280, C, temporal=False).to(dev, dt).eval()
emb = torch.randn(N, 1280, device=dev, dtype=dt)
t("RB_eager_nchw", lambda: rb(x, emb, 2))
rbcl = model.ResBlock(C, 1280, C, temporal=False).to(dev, dt).eval().to(memory_format=CL)
t("RB_eager_cl", lambda: rbcl(xcl, emb, 2)); R["RB_out_cl"] = rbcl(xcl, emb, 2).is_contiguous(memory_format=CL)
try:
    t0 = time.time(); cst = torch.compile(st); cst(xcl, ctx); torch.cuda.synchronize(); R["compile_s_ST"] = time.time() - t0
    t("ST_compiled_cl", lambda: cst(xcl, ctx))
    t0 = time.time(); crb = torch.compile(rbcl); crb(xcl, emb, 2); torch.cuda.synchronize(); R["compile_s_RB"] = time.time() - t0
    t("RB_compiled_cl", lambda: crb(xcl, emb, 2))
except Exception as e:
    print("compile failed", repr(e)[:500])
print(json.dumps(R, indent=1))
json.dump(R, open(os.path.join(os.environ.get("OUT", "."), "probe.json"), "w"), indent=1)
