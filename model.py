"""VideoCrafter2, from scratch: the 3D UNet, the image VAE, the OpenCLIP ViT-H text encoder and its tokenizer.

Every module keeps the original checkpoint's parameter names (minus the `model.diffusion_model.`,
`first_stage_model.` and `cond_stage_model.model.` prefixes), so the released `model.ckpt` loads unchanged.
This file is a plain single-device model: it knows nothing of ranks. clip_parallel.py swaps the few
temporal modules that need context from other clips (see DESIGN.md section 3).

Layouts: a video is (b, c, t, h, w). Inside the UNet, frames are folded into the batch, ((b t), c, h, w),
frame index fastest; only the temporal layers unfold them.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# UNet building blocks


class GroupNorm32(nn.GroupNorm):
    """ResBlock / output norms: statistics in float32 whatever the activation dtype, as the original."""

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(timesteps, dim, max_period=10000):
    # [cos | sin] halves (the original order; many re-implementations swap them)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    """Multi-head attention; self-attention when context is None. Heads split as (h d) on channels."""

    def __init__(self, query_dim, heads, dim_head, context_dim=None):
        super().__init__()
        inner, context_dim = heads * dim_head, context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def split_heads(self, x):  # (n, l, (h d)) -> (n, h, l, d)
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x, context=None):  # x: (n, l, c)
        context = x if context is None else context
        q, k, v = (self.split_heads(f(y)) for f, y in ((self.to_q, x), (self.to_k, context), (self.to_v, context)))
        out = F.scaled_dot_product_attention(q, k, v)  # scale d_head^-0.5, as the original
        return self.to_out(out.transpose(1, 2).flatten(2))


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)  # first half is x, second half the gate
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim))

    def forward(self, x):
        return self.net(x)


class TransformerBlock(nn.Module):
    """attn1 (self), attn2 (cross with context, or a second self-attention when context_dim is None), GEGLU FF."""

    def __init__(self, dim, heads, dim_head, context_dim=None):
        super().__init__()
        self.attn1 = Attention(dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, heads, dim_head, context_dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Attention over the h*w tokens of each frame, cross-attention to the text."""

    def __init__(self, channels, heads, dim_head, context_dim):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, dim_head, context_dim)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x, context):  # x: ((b t), c, h, w), context: ((b t), 77, d)
        bt, c, h, w = x.shape
        y = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))  # ((b t), (h w), c)
        for block in self.transformer_blocks:
            y = block(y, context)
        return self.proj_out(y).transpose(1, 2).reshape(bt, c, h, w) + x


class TemporalTransformer(nn.Module):
    """Self-attention over the t frames at each (b, h, w) position; no positional encoding.

    VC2 (temporal_selfatt_only): attn2 is a second self-attention, not cross-attention. The GroupNorm sees
    the 5-D tensor, so its statistics span ALL frames. In the main blocks proj_in/proj_out are Linear;
    init_attn (use_linear=False) keeps the kernel-1 Conv1d of the original.
    """

    def __init__(self, channels, heads, dim_head, use_linear=True):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv1d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, dim_head)])
        self.proj_out = nn.Linear(inner, channels) if use_linear else nn.Conv1d(inner, channels, 1)

    def project(self, proj, y):  # y: ((b h w), t, c); Conv1d wants channels first
        return proj(y) if isinstance(proj, nn.Linear) else proj(y.transpose(1, 2)).transpose(1, 2)

    def forward(self, x):  # x: (b, c, t, h, w)
        b, c, t, h, w = x.shape
        y = self.norm(x).permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)
        y = self.project(self.proj_in, y)
        for block in self.transformer_blocks:
            y = block(y)
        y = self.project(self.proj_out, y)
        return y.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2) + x


def temporal_conv(c_in, c_out, dropout):
    # GroupNorm over (group channels, ALL frames, h, w); Conv3d (3,1,1) zero-pads one frame at each end of the video
    layers = [nn.GroupNorm(32, c_in), nn.SiLU()] + ([nn.Dropout(0.0)] if dropout else [])
    return nn.Sequential(*layers, nn.Conv3d(c_in, c_out, (3, 1, 1), padding=(1, 0, 0)))


class TemporalConvBlock(nn.Module):
    """Four temporal convs with their own residual. conv1 has no Dropout slot, hence conv2..4 index their conv 3."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = temporal_conv(channels, channels, dropout=False)
        self.conv2 = temporal_conv(channels, channels, dropout=True)
        self.conv3 = temporal_conv(channels, channels, dropout=True)
        self.conv4 = temporal_conv(channels, channels, dropout=True)

    def forward(self, x):  # x: (b, c, t, h, w)
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    def __init__(self, channels, emb_channels, out_channels, temporal=True):
        super().__init__()
        self.in_layers = nn.Sequential(GroupNorm32(32, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(32, out_channels), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        # the key is misspelled in the original checkpoint
        self.temopral_conv = TemporalConvBlock(out_channels) if temporal else None

    def forward(self, x, emb, b):  # x: ((b t), c, h, w), emb: ((b t), e)
        h = self.in_layers(x) + self.emb_layers(emb).type(x.dtype)[:, :, None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        # the temporal convs act after the skip addition and keep their own residual
        return h if self.temopral_conv is None else fold(self.temopral_conv(unfold(h, b)))


def unfold(x, b):  # ((b t), c, h, w) -> (b, c, t, h, w)
    return x.unflatten(0, (b, -1)).transpose(1, 2)


def fold(x):  # (b, c, t, h, w) -> ((b t), c, h, w)
    return x.transpose(1, 2).flatten(0, 1)


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Block(nn.ModuleList):
    """The original TimestepEmbedSequential: routes emb / context / frame unfolding to each layer kind."""

    def forward(self, x, emb, context, b):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, b)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, TemporalTransformer):
                x = fold(layer(unfold(x, b)))
            else:
                x = layer(x)
        return x


# The flags of VC2's YAML. Anything else would select code paths VC2 does not use (and this file lacks).
VC2_FLAGS = dict(
    use_linear=True, temporal_conv=True, temporal_attention=True, temporal_selfatt_only=True,
    use_relative_position=False, use_causal_attention=False, addition_attention=True, fps_cond=True,
    transformer_depth=1, dropout=0.0, conv_resample=True, dims=2, use_scale_shift_norm=False,
    resblock_updown=False, tempspatial_aware=False, temporal_transformer_depth=1, use_image_attention=False,
    num_heads=-1,
)
IGNORED_FLAGS = ("use_checkpoint", "temporal_length", "image_size")  # gradient checkpointing; unused by VC2's forward


class UNet(nn.Module):
    """VC2's 3D UNet (lvdm openaimodel3d.UNetModel with the VC2 flags)."""

    def __init__(self, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=(4, 2, 1),
                 num_res_blocks=2, channel_mult=(1, 2, 4, 4), num_head_channels=64, context_dim=1024, **flags):
        super().__init__()
        for name, value in flags.items():
            if name in IGNORED_FLAGS:
                continue
            if name not in VC2_FLAGS:
                raise ValueError(f"UNet: unknown config key {name!r}")
            if value != VC2_FLAGS[name] and not (isinstance(value, list) and tuple(value) == VC2_FLAGS[name]):
                raise ValueError(f"UNet: {name}={value!r} is not supported; VideoCrafter2 uses {VC2_FLAGS[name]!r}")
        if model_channels % 32 or num_head_channels <= 0 or model_channels % num_head_channels:
            raise ValueError("UNet: model_channels must be a multiple of 32 and of num_head_channels")
        self.model_channels = model_channels
        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.fps_embedding = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def attention(ch):  # a SpatialTransformer followed by a TemporalTransformer, at every attention resolution
            heads = ch // num_head_channels
            return [SpatialTransformer(ch, heads, num_head_channels, context_dim),
                    TemporalTransformer(ch, heads, num_head_channels)]

        self.input_blocks = nn.ModuleList([Block([nn.Conv2d(in_channels, model_channels, 3, padding=1)])])
        # init_attn: 8 heads of num_head_channels regardless of the width (512 wide at full size, not 320)
        self.init_attn = Block([TemporalTransformer(model_channels, 8, num_head_channels, use_linear=False)])
        skip_channels, ch, ds = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, emb_dim, mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers += attention(ch)
                self.input_blocks.append(Block(layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(Block([Downsample(ch)]))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = Block([ResBlock(ch, emb_dim, ch), *attention(ch), ResBlock(ch, emb_dim, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers += attention(ch)
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Block(layers))
        self.out = nn.Sequential(GroupNorm32(32, ch), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1))

    def forward(self, x, timesteps, context, fps):
        """x (b, 4, t, h, w), timesteps (b,) int, context (b, 77, d), fps (b,) int or an int -> (b, 4, t, h, w)."""
        b, _, t, _, _ = x.shape
        if isinstance(fps, int):
            fps = torch.full_like(timesteps, fps)
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        emb = emb + self.fps_embedding(timestep_embedding(fps, self.model_channels))
        # every frame gets its video's embedding and text
        emb, context = emb.repeat_interleave(t, dim=0), context.repeat_interleave(t, dim=0)
        h, skips = fold(x).to(emb.dtype), []
        for i, block in enumerate(self.input_blocks):
            h = block(h, emb, context, b)
            if i == 0:  # init_attn sits between the first conv and the first ResBlock, and its output is the skip
                h = self.init_attn(h, emb, context, b)
            skips.append(h)
        h = self.middle_block(h, emb, context, b)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context, b)
        return unfold(self.out(h), b).to(x.dtype)
