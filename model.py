"""VideoCrafter2, from scratch: the 3D UNet, the image VAE, the OpenCLIP ViT-H text encoder and its tokenizer.

Every module keeps the original checkpoint's parameter names (minus the `model.diffusion_model.`,
`first_stage_model.` and `cond_stage_model.model.` prefixes), so the released `model.ckpt` loads unchanged.
This file is a plain single-device model: it knows nothing of ranks. clip_parallel.py swaps the few
temporal modules that need context from other clips; fast.py swaps in faster forms of the same math.

Layouts: a video is (b, c, t, h, w). Inside the UNet, frames are folded into the batch, ((b t), c, h, w),
frame index fastest; only the temporal layers unfold them.
"""
import functools
import gzip
import html
import json
import math
import os
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# UNet building blocks


class GroupNorm32(nn.GroupNorm):
    """ResBlock / output norms: statistics in float32 whatever the activation dtype, as the original.

    The original casts x to float32 and back; PyTorch's group_norm already computes in float32 for half and
    bfloat16 inputs (statistics and the normalisation, one rounding at the end), at a third of the memory traffic.
    """

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


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

    def attend(self, x, context=None):  # x: (n, l, c) -> the heads' outputs (n, l, (h d)), before to_out
        context = x if context is None else context
        q, k, v = (self.split_heads(f(y)) for f, y in ((self.to_q, x), (self.to_k, context), (self.to_v, context)))
        out = F.scaled_dot_product_attention(q, k, v)  # scale d_head^-0.5, as the original
        return out.transpose(1, 2).flatten(2)

    def forward(self, x, context=None):  # x: (n, l, c)
        return self.to_out(self.attend(x, context))


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)  # first half is x, second half the gate
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    chunk_bytes = 2 ** 29  # bound on the GEGLU hidden activations (8x the width) held at once

    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim))

    def forward(self, x):  # x: (n, l, c); the rows are independent, so long inputs go through in chunks of rows
        rows = max(1, self.chunk_bytes // (x[:1].numel() * 8 * x.element_size()))
        if rows >= len(x):
            return self.net(x)
        out = torch.empty_like(x)
        for i in range(0, len(x), rows):
            out[i:i + rows] = self.net(x[i:i + rows])
        return out


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
        # x + ..., not ... + x: the sum takes x's memory layout (NCHW), not the token view's (channels-last), so the
        # frames stay frames-major for the temporal layers that read them next
        return x + self.proj_out(y).transpose(1, 2).reshape(bt, c, h, w)


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

    def project(self, proj, y):  # y: ((b h w), t, c); a kernel-1 Conv1d is a Linear over channels (no transposes)
        return proj(y) if isinstance(proj, nn.Linear) else F.linear(y, proj.weight[..., 0], proj.bias)

    def forward(self, x):  # x: (b, c, t, h, w)
        b, c, t, h, w = x.shape
        y = self.norm(x).permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)  # tokens ((b h w), t, c)
        y = self.project(self.proj_in, y)
        for block in self.transformer_blocks:
            y = block(y)
        # the residual sum x + ..., not ... + x, takes x's memory layout (frames-major), so the fold after it is a view
        return x + self.project(self.proj_out, y).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)


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

    def frame_layers(self, x, emb):  # the per-frame part: x ((b t), c, h, w), emb ((b t), e)
        h = self.in_layers(x) + self.emb_layers(emb).type(x.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)

    def forward(self, x, emb, b):
        h = self.frame_layers(x, emb)
        # the temporal convs act after the skip addition and keep their own residual
        return h if self.temopral_conv is None else fold(self.temopral_conv(unfold(h, b)))


def unfold(x, b):  # ((b t), c, h, w) -> (b, c, t, h, w), a view: memory stays frames-major (b, t, c, h, w)
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
        self.model_channels, self.context_dim = model_channels, context_dim
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
        """x (b, 4, t, h, w), timesteps (b,) int, context (b, 77, d) or (b, t, 77, d), fps (b,) int or int -> like x."""
        b, _, t, _, _ = x.shape
        if isinstance(fps, int):
            fps = torch.full_like(timesteps, fps)
        dtype = self.time_embed[0].weight.dtype  # the sinusoids are float32; the model may run in bf16/fp16
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(dtype))
        emb = emb + self.fps_embedding(timestep_embedding(fps, self.model_channels).to(dtype))
        # every frame gets its video's embedding and text
        emb = emb.repeat_interleave(t, dim=0)
        # context (b, 77, d) is one text per video; (b, t, 77, d) gives each frame its own (multi-prompt videos)
        context = context.to(dtype).repeat_interleave(t, dim=0) if context.dim() == 3 else context.to(dtype).flatten(0, 1)
        h, skips = fold(x).to(dtype), []
        for i, block in enumerate(self.input_blocks):
            h = block(h, emb, context, b)
            if i == 0:  # init_attn sits between the first conv and the first ResBlock, and its output is the skip
                h = self.init_attn(h, emb, context, b)
            skips.append(h)
        h = self.middle_block(h, emb, context, b)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context, b)
        return unfold(self.out(h), b).to(x.dtype)


# ----------------------------------------------------------------------------
# CLIP tokenizer (open_clip 2.22.0 SimpleTokenizer + open_clip.tokenize)


def _bytes_to_unicode():
    # printable latin-1 bytes map to themselves, the other 68 bytes to U+0100...; the insertion
    # order of this dict is also the order of the first 256 vocab entries
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


# stdlib stand-in for ftfy.fix_text (6.3.1, default config), applied per line and repeated to a fixed point
# like ftfy. Covered: its HTML-entity pass (off from the first line with a '<'), UTF-8 mojibake read as
# latin-1/cp1252, C1 controls read as cp1252, terminal escapes, Latin ligatures, full-width ASCII, curly
# quotes, control characters. NOT covered: NFC normalisation (needs unicodedata: "e\u0301" stays 2 chars),
# half-width katakana/hangul and U+FFE0-FFEE width forms, upper-case entity variants (&EACUTE;), ftfy's
# "badness" heuristic (approximated by the run rule below), the other codecs it tries (cp1250/1251/1254,
# macroman, cp437), restore_byte_a0, lossy-sequence/CESU-8/surrogate repair, line-break normalisation
# (harmless: whitespace is collapsed later).
_SLOPPY = {chr(b): b for b in range(0x80, 0x100)}  # char -> byte under latin-1 and "sloppy" windows-1252
_SLOPPY.update({bytes([b]).decode('cp1252', 'ignore'): b for b in range(0x80, 0xA0)})
_SLOPPY.pop('')
_CONT = '[' + ''.join(c for c, b in _SLOPPY.items() if b < 0xC0) + ']'  # UTF-8 continuation bytes
_RUN = f'[\xc2-\xdf]{_CONT}|[\xe0-\xef]{_CONT}{{2}}|[\xf0-\xf4]{_CONT}{{3}}'  # one UTF-8 char, bytes read as cp1252
# a lone 2-char run is only trusted after Â/Ã (U+0080-00FF: é, ü, °, ...); "Straße…" or "CAFÉ–BAR" stay intact
_MOJIBAKE = re.compile(f'(?:{_RUN}){{2,}}|[ÂÃ]{_CONT}|[\xe0-\xef]{_CONT}{{2}}|[\xf0-\xf4]{_CONT}{{3}}')
_ANSI = re.compile(r'\x1b\[((?:\d|;)*)([a-zA-Z])')
_FIX_TABLE = {
    **{ord(a): b for a, b in zip('ĲĳŉǱǲǳǄǅǆǇǈǉǊǋǌﬀﬁﬂﬃﬄﬅﬆ', 'IJ ij ʼn DZ Dz dz DŽ Dž dž LJ Lj lj NJ Nj nj ff fi fl ffi ffl ſt st'.split())},
    **{i: chr(i - 0xFEE0) for i in range(0xFF01, 0xFF5F)}, 0x3000: ' ',  # full-width ASCII, ideographic space
    **{i: "'" for i in [0x02BC, *range(0x2018, 0x201C)]}, **{i: '"' for i in range(0x201C, 0x2020)},  # uncurl
    **{i: None for i in [*range(0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF,
                         *range(0xFFF9, 0xFFFD), *range(0x1D173, 0x1D17B), *range(0xE0000, 0xE0080)]},
}


def _unmojibake(m):
    try:
        return bytes(_SLOPPY[c] for c in m[0]).decode('utf-8')
    except UnicodeDecodeError:
        return m[0]


def _fix_text(text):
    out, unescape = [], True
    for line in re.split('(?<=\n)', text):  # ftfy works per line; a '<' disables unescaping from then on
        unescape = unescape and '<' not in line
        while True:
            orig = line
            if unescape:  # ftfy only knows entities that end in ';'
                line = re.sub(r'&#?[0-9A-Za-z]{1,24};', lambda m: html.unescape(m[0]), line)
            line = _MOJIBAKE.sub(_unmojibake, line)
            line = re.sub('[\x80-\x9f]', lambda m: bytes([ord(m[0])]).decode('cp1252', 'ignore') or m[0], line)
            line = _ANSI.sub('', line).translate(_FIX_TABLE)
            if line == orig:
                break
        out.append(line)
    return ''.join(out)


# The original pattern (`regex` module) is  <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
# Python's \w is L + anything with a numeric value + '_', and \d is Nd, so \p{N} = \d + _NUMERIC (Nl, No).
_NUMERIC = ''.join(c for c in map(chr, range(0x110000)) if c.isnumeric() and not c.isdecimal() and not c.isalpha())
# The original's IGNORECASE also bends the classes: U+0345 (a mark that case-folds to iota) matches no
# branch there and is silently dropped, so it is excluded here and IGNORECASE is scoped to the literals.
# (\s differs only on U+001C-001F, which the cleaning removes.)
_PAT = re.compile(r"(?i:<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d)|"
                  rf"[^\W\d_{_NUMERIC}]+|[\d{_NUMERIC}]|(?:[^\w\s\u0345]|_)+")


class Tokenizer:
    def __init__(self, bpe_path=None):
        bpe_path = bpe_path or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bpe_simple_vocab_16e6.txt.gz')
        with gzip.open(bpe_path) as f:  # line 0 is a header; CLIP keeps only 49152-256-2 merges
            merges = [tuple(m.split()) for m in f.read().decode('utf-8').split('\n')[1:49152 - 256 - 2 + 1]]
        self.byte_encoder = _bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab += [v + '</w>' for v in vocab] + [''.join(m) for m in merges] + ['<start_of_text>', '<end_of_text>']
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder['<start_of_text>'], self.encoder['<end_of_text>']
        self.bpe = functools.lru_cache(maxsize=None)(self._bpe)

    def _bpe(self, token):  # token: byte-level unicode string -> tuple of ids
        word = list(token[:-1]) + [token[-1] + '</w>']
        while len(word) > 1:
            best = min(zip(word, word[1:]), key=lambda p: self.ranks.get(p, float('inf')))
            if best not in self.ranks:
                break
            i = 0
            while i < len(word) - 1:  # merge every occurrence, left to right, without overlaps
                if (word[i], word[i + 1]) == best:
                    word[i:i + 2] = [word[i] + word[i + 1]]
                i += 1
        return tuple(self.encoder[w] for w in word)

    def encode(self, text):
        text = html.unescape(html.unescape(_fix_text(text))).strip()
        text = re.sub(r'\s+', ' ', text).strip().lower()
        ids = []
        for tok in _PAT.findall(text):
            if tok in ('<start_of_text>', '<end_of_text>'):  # literal special strings become the special ids
                ids.append(self.encoder[tok])
            else:
                ids.extend(self.bpe(''.join(self.byte_encoder[b] for b in tok.encode('utf-8'))))
        return ids

    def __call__(self, texts, context_length=77):
        texts = [texts] if isinstance(texts, str) else texts
        out = torch.zeros(len(texts), context_length, dtype=torch.long)  # pad id 0
        for i, text in enumerate(texts):
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > context_length:  # truncated rows end with eot and have no padding
                ids = ids[:context_length]
                ids[-1] = self.eot
            out[i, :len(ids)] = torch.tensor(ids)
        return out


# ----------------------------------------------------------------------------
# OpenCLIP text tower (ViT-H-14: width 1024, 16 heads, 24 layers), activations (n, 77, width)


class CausalSelfAttention(nn.Module):
    # parameter names of nn.MultiheadAttention: in_proj rows are [q; k; v], heads split as (h d)
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.randn(3 * width, width) * width ** -0.5)
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):
        n, L, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(n, L, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # == the -inf-above-diagonal attn_mask
        return self.out_proj(y.transpose(1, 2).reshape(n, L, d))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)  # eps 1e-5
        self.attn = CausalSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(width, 4 * width), c_proj=nn.Linear(4 * width, width)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp['c_proj'](F.gelu(self.mlp['c_fc'](self.ln_2(x))))  # exact erf GELU, not QuickGELU


class TextEncoder(nn.Module):
    def __init__(self, context_length=77, vocab_size=49408, width=1024, heads=16, layers=24, embed_dim=None):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        # in the checkpoint but unused by VideoCrafter (it uses per-token features, not the pooled embedding)
        self.text_projection = nn.Parameter(torch.randn(width, embed_dim or width) * width ** -0.5)
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())

    def forward(self, tokens):  # (n, 77) int64 -> (n, 77, width)
        x = self.token_embedding(tokens) + self.positional_embedding
        for block in self.transformer.resblocks[:-1]:  # layer='penultimate': the last block never runs,
            x = block(x)
        return self.ln_final(x)  # ...but ln_final is still applied


# ----------------------------------------------------------------------------
# First-stage VAE (lvdm AutoencoderKL), images (n, 3, H, W) in [-1, 1], latents (n, 4, H/8, W/8)


def Normalize(c):
    return nn.GroupNorm(32, c, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = Normalize(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = Normalize(cout), nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))  # dropout (0 in VC2, and eval) omitted
        return (self.nin_shortcut(x) if hasattr(self, 'nin_shortcut') else x) + h


class AttnBlock(nn.Module):  # single head over all H*W positions, 1x1-conv projections
    def __init__(self, c):
        super().__init__()
        self.norm = Normalize(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        n, c, H, W = x.shape
        h = self.norm(x)
        q, k, v = (p(h).flatten(2).transpose(1, 2)[:, None] for p in (self.q, self.k, self.v))  # (n, 1, HW, c)
        h = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(n, c, H, W)
        return x + self.proj_out(h)


class Mid(nn.Module):  # present in encoder and decoder even though attn_resolutions is empty
    def __init__(self, c):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Resample(nn.Module):
    def __init__(self, c, up):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(c, c, 3, stride=1 if up else 2, padding=1 if up else 0)

    def forward(self, x):  # down: pad right/bottom only, then stride 2 (the UNet uses padding=1 instead)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest') if self.up else F.pad(x, (0, 1, 0, 1)))


class Level(nn.Module):  # one resolution: ResnetBlocks, then an optional .downsample or .upsample
    def __init__(self, cin, cout, n_blocks, resample=None):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin if j == 0 else cout, cout) for j in range(n_blocks))
        self.resample = resample
        if resample:
            setattr(self, resample, Resample(cout, up=resample == 'upsample'))

    def forward(self, h):
        for block in self.block:
            h = block(h)
        return getattr(self, self.resample)(h) if self.resample else h


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, in_channels, z_channels):
        super().__init__()
        n, cin = len(ch_mult), [1, *ch_mult]
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList(Level(ch * cin[i], ch * ch_mult[i], num_res_blocks, 'downsample' if i < n - 1 else None)
                                  for i in range(n))
        self.mid = Mid(ch * ch_mult[-1])
        self.norm_out = Normalize(ch * ch_mult[-1])
        self.conv_out = nn.Conv2d(ch * ch_mult[-1], 2 * z_channels, 3, padding=1)  # double_z: mean and logvar

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, out_ch, z_channels):
        super().__init__()
        n, cin = len(ch_mult), [*ch_mult[1:], ch_mult[-1]]
        self.conv_in = nn.Conv2d(z_channels, ch * ch_mult[-1], 3, padding=1)
        self.mid = Mid(ch * ch_mult[-1])
        # the original builds the deepest level first with up.insert(0, ...), so up[i] is level i and runs
        # in reverse; each level has one ResnetBlock more than the encoder's
        self.up = nn.ModuleList(Level(ch * cin[i], ch * ch_mult[i], num_res_blocks + 1, 'upsample' if i else None)
                                for i in range(n))
        self.norm_out = Normalize(ch * ch_mult[0])
        self.conv_out = nn.Conv2d(ch * ch_mult[0], out_ch, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # no tanh


class AutoencoderKL(nn.Module):
    def __init__(self, ddconfig, embed_dim):
        super().__init__()
        known = {'double_z', 'z_channels', 'resolution', 'in_channels', 'out_ch', 'ch', 'ch_mult', 'num_res_blocks',
                 'attn_resolutions', 'dropout'}
        if set(ddconfig) - known:
            raise ValueError(f'ddconfig keys not used by VideoCrafter2: {sorted(set(ddconfig) - known)}')
        if ddconfig.get('attn_resolutions'):
            raise ValueError('only attn_resolutions=[] is supported (VC2 has attention in the mid blocks only)')
        if not ddconfig.get('double_z', True):
            raise ValueError('only double_z=True is supported (the encoder outputs mean and logvar)')
        d = {k: ddconfig[k] for k in ('ch', 'ch_mult', 'num_res_blocks', 'z_channels')}
        self.encoder = Encoder(in_channels=ddconfig['in_channels'], **d)
        self.decoder = Decoder(out_ch=ddconfig['out_ch'], **d)
        self.quant_conv = nn.Conv2d(2 * d['z_channels'], 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, d['z_channels'], 1)

    def encode(self, x):  # -> mean, logvar of the diagonal Gaussian posterior
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):  # z unscaled: the pipeline divides by scale_factor 0.18215 first
        return self.decoder(self.post_quant_conv(z))


# -----------------------------------------------------------------------------
# Loading the released checkpoint

# VC2's sizes (configs/inference_t2v_512_v2.0.yaml); a config of the same form loads tiny test checkpoints.
VC2_CONFIG = dict(
    unet=dict(in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1], num_res_blocks=2,
              channel_mult=[1, 2, 4, 4], num_head_channels=64, context_dim=1024),
    vae=dict(ddconfig=dict(double_z=True, z_channels=4, resolution=512, in_channels=3, out_ch=3, ch=128,
                           ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0), embed_dim=4),
    text=dict(context_length=77, vocab_size=49408, width=1024, heads=16, layers=24),
    scale_factor=0.18215,
)
PREFIXES = dict(unet="model.diffusion_model.", vae="first_stage_model.", text="cond_stage_model.model.")
HF_REPO, HF_FILE = "VideoCrafter/VideoCrafter2", "model.ckpt"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says which file and why, in one line."""


def read_state_dict(path):
    """A .safetensors file (memory-mapped) or a .ckpt torch pickle, read with weights_only=True (no code runs)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    if path.endswith(".safetensors"):
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path!r} is truncated or not a safetensors file ({e})") from None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for code-carrying pickles, RuntimeError for non-zip files, ...
        if "GLOBAL" in str(e):
            why = next(line for line in str(e).splitlines() if "GLOBAL" in line)
            raise CheckpointError(f"checkpoint {path!r} would run code when unpickled: refused ({why.strip()})") from None
        raise CheckpointError(f"checkpoint {path!r} is not a torch checkpoint of plain tensors") from None
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"checkpoint {path!r} holds no state_dict of tensors")
    return sd


def ckpt_state_dict(ckpt_path):
    """A .ckpt's state dict in fp16, converted once to safetensors beside it (model.fp16.safetensors, fast to load).

    Every process gets the same fp16 weights, whichever reads the cache and whichever converts: concurrent ranks
    each write a temporary file of their own and rename it (atomic), and a read-only folder (no cache) gives the
    same fp16 tensors from the pickle."""
    from safetensors.torch import save_file
    cache = os.path.splitext(ckpt_path)[0] + ".fp16.safetensors"
    if os.path.exists(cache):
        return read_state_dict(cache)
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in read_state_dict(ckpt_path).items()}
    tmp = f"{cache}.{os.getpid()}.tmp"
    try:
        save_file(sd, tmp)
        os.chmod(tmp, 0o644)  # readable by whoever can read the checkpoint beside it
        os.replace(tmp, cache)
    except OSError:  # read-only folder: convert in memory each run
        if os.path.exists(tmp):
            os.remove(tmp)
    return sd


def download_vc2():
    """The released model.ckpt from the Hugging Face Hub cache, downloading it (5.5 GB) if it is not there yet.

    Without network this fails in seconds: one request, no retries (the Hub client retries for ~25 s), then a
    message that says where the file comes from."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import LocalEntryNotFoundError
    try:
        return hf_hub_download(HF_REPO, HF_FILE, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    how = (f"download {HF_FILE} (5.5 GB) of the Hugging Face repo {HF_REPO} ({constants.ENDPOINT}/{HF_REPO}) "
           f"and pass --checkpoint PATH, or put it in the Hub cache and set HF_HUB_OFFLINE=1")
    if constants.HF_HUB_OFFLINE:
        raise CheckpointError(f"could not download {HF_REPO}/{HF_FILE} and it is not cached (HF_HUB_OFFLINE is set): "
                              f"{how}")
    try:  # one request, no retries: is the Hub reachable at all?
        get_hf_file_metadata(hf_hub_url(HF_REPO, HF_FILE), timeout=10)
    except Exception as e:  # no network, a proxy, gated, ...
        raise CheckpointError(f"could not download {HF_REPO}/{HF_FILE} and it is not cached ({type(e).__name__}: "
                              f"cannot reach {constants.ENDPOINT}): {how}") from None
    try:
        return hf_hub_download(HF_REPO, HF_FILE)
    except Exception as e:  # the network went away mid-download, disk full, ...
        why = (str(e).splitlines() or [""])[0]
        raise CheckpointError(f"could not download {HF_REPO}/{HF_FILE} ({type(e).__name__}: {why}); {how}") from None


def check_keys(part, module, sd):
    """Strict key and shape check with a readable message (first few of each problem)."""
    own = {k: v.shape for k, v in module.state_dict().items()}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(f"{k} {tuple(sd[k].shape)} != {tuple(own[k])}" for k in set(own) & set(sd) if sd[k].shape != own[k])
    problems = [f"{name}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''} ({len(items)})"
                for name, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)) if items]
    if problems:
        raise CheckpointError(f"checkpoint does not match the {part} config ({PREFIXES[part]}*): " + "; ".join(problems))


def check_config(config):
    """A model config of the form of VC2_CONFIG, checked before anything is built: every field's type and range,
    and the sizes the parts share. Raises ValueError naming the field and what was expected."""
    def fail(field, expected, value):
        raise ValueError(f"model config: {field} must be {expected}, got {value!r}")

    def is_int(v):  # JSON's true/false are Python ints: refused where a size belongs
        return isinstance(v, int) and not isinstance(v, bool)

    def section(parent, name, where):
        v = parent.get(name)
        if not isinstance(v, dict):
            fail(where, "an object (as in model.VC2_CONFIG)", v)
        return v

    def ints(part, names, where, low=1):
        for name in names:
            if name not in part:
                fail(f"{where}.{name}", f"given (an int >= {low})", None)
            if not (is_int(part[name]) and part[name] >= low):
                fail(f"{where}.{name}", f"an int >= {low}", part[name])

    def int_list(part, name, where, low=1, empty=False):
        v = part.get(name)
        if not (isinstance(v, list) and (empty or v) and all(is_int(x) and x >= low for x in v)):
            fail(f"{where}.{name}", f"a {'' if empty else 'non-empty '}list of ints >= {low}", v)
        return v

    def known(part, names, where):  # a misspelt key would otherwise be silently replaced by its default
        unknown = sorted(set(part) - set(names))
        if unknown:
            raise ValueError(f"model config: unknown key {where}{unknown[0]} (the keys are those of model.VC2_CONFIG "
                             f"and VideoCrafter2's YAML)")

    if not isinstance(config, dict):
        fail("the config", "a JSON object with unet, vae and text sections", config)
    known(config, ("unet", "vae", "text", "scale_factor"), "")
    unet, vae, text = (section(config, name, name) for name in ("unet", "vae", "text"))
    known(unet, ("in_channels", "out_channels", "model_channels", "attention_resolutions", "num_res_blocks",
                 "channel_mult", "num_head_channels", "context_dim", *VC2_FLAGS, *IGNORED_FLAGS), "unet.")
    known(vae, ("ddconfig", "embed_dim"), "vae.")
    known(text, ("context_length", "vocab_size", "width", "heads", "layers", "embed_dim"), "text.")
    # the UNet (its VC2-only flags are checked by UNet itself: a wrong value there names the flag and VC2's value)
    ints(unet, ("in_channels", "out_channels", "model_channels", "num_res_blocks", "num_head_channels",
                "context_dim"), "unet")
    if unet["model_channels"] % 32 or unet["model_channels"] % unet["num_head_channels"]:  # GroupNorm(32, c), heads
        fail("unet.model_channels", f"a multiple of 32 and of num_head_channels ({unet['num_head_channels']})",
             unet["model_channels"])
    levels = len(int_list(unet, "channel_mult", "unet"))
    reachable = [2 ** i for i in range(levels)]  # the downsampling factor of each level: where attention can sit
    if not all(r in reachable for r in int_list(unet, "attention_resolutions", "unet", empty=True)):
        fail("unet.attention_resolutions", f"a list of levels' downsampling factors, from {reachable}",
             unet["attention_resolutions"])
    # the VAE
    dd = section(vae, "ddconfig", "vae.ddconfig")
    known(dd, ("double_z", "z_channels", "resolution", "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks",
               "attn_resolutions", "dropout"), "vae.ddconfig.")
    ints(vae, ("embed_dim",), "vae")
    ints(dd, ("z_channels", "in_channels", "out_ch", "ch", "num_res_blocks", "resolution"), "vae.ddconfig")
    if dd["ch"] % 32:
        fail("vae.ddconfig.ch", "a multiple of 32 (GroupNorm of 32 groups)", dd["ch"])
    if dd["out_ch"] != 3:
        fail("vae.ddconfig.out_ch", "3 (RGB frames)", dd["out_ch"])
    if len(int_list(dd, "ch_mult", "vae.ddconfig")) != 4:  # sample.py's latents are 1/8 of the frame
        fail("vae.ddconfig.ch_mult", "4 levels long (3 downsamplings: latents 1/8 of the frame, as VC2)",
             dd["ch_mult"])
    if "dropout" in dd and not (isinstance(dd["dropout"], (int, float)) and not isinstance(dd["dropout"], bool)
                                and 0 <= dd["dropout"] < 1):
        fail("vae.ddconfig.dropout", "a number in [0, 1) (unused at inference)", dd["dropout"])
    # the text encoder: the tokenizer makes 77 ids from a vocabulary of 49408
    ints(text, ("width", "heads", "layers"), "text")
    for name, value in (("context_length", 77), ("vocab_size", 49408)):
        if text.get(name, value) != value:
            fail(f"text.{name}", f"{value} (the tokenizer's)", text[name])
    if text["width"] % text["heads"]:
        fail("text.width", f"a multiple of text.heads ({text['heads']})", text["width"])
    if text.get("embed_dim") is not None:
        ints(text, ("embed_dim",), "text")
    # sizes the parts share
    if unet["context_dim"] != text["width"]:
        fail("unet.context_dim", f"text.width ({text['width']}): the UNet's cross-attention reads the text "
             f"encoder's features", unet["context_dim"])
    for name in ("in_channels", "out_channels"):
        if unet[name] != vae["embed_dim"]:
            fail(f"unet.{name}", f"vae.embed_dim ({vae['embed_dim']}): the UNet denoises the VAE's latents",
                 unet[name])
    scale = config.get("scale_factor", VC2_CONFIG["scale_factor"])
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        fail("scale_factor", "a positive finite number (VC2: 0.18215)", scale)
    return config


def load_videocrafter2(source=None, config=None, dtype=torch.float32, device="cpu"):
    """Build VC2's parts and load their weights -> dict(unet, vae, text, tokenizer, scale_factor, buffers).

    source: a local .ckpt (torch pickle with `state_dict`, cached once as fp16 safetensors beside it) or a
    .safetensors file; default: the released checkpoint through huggingface_hub. config: a dict (or JSON path)
    of the form of VC2_CONFIG; default: VideoCrafter2's sizes.
    """
    if isinstance(config, str):
        with open(config) as f:
            config = json.load(f)
    config = check_config(config or VC2_CONFIG)  # before the download or any read: a bad config fails at once
    path = source or download_vc2()
    sd = ckpt_state_dict(path) if path.endswith(".ckpt") else read_state_dict(path)
    parts = dict(unet=UNet(**config["unet"]), vae=AutoencoderKL(**config["vae"]), text=TextEncoder(**config["text"]))
    for name, module in parts.items():
        own = {k[len(PREFIXES[name]):]: v for k, v in sd.items() if k.startswith(PREFIXES[name])}
        check_keys(name, module, own)
        module.load_state_dict({k: v.to(dtype) for k, v in own.items()}, strict=True)
        parts[name] = module.to(device=device).eval().requires_grad_(False)
    # the schedule buffers (betas, alphas_cumprod, scale_arr, ...) are plain top-level keys
    parts["buffers"] = {k: v for k, v in sd.items() if "." not in k}
    parts["tokenizer"] = Tokenizer()
    parts["scale_factor"] = config.get("scale_factor", VC2_CONFIG["scale_factor"])
    return parts
