"""An independent, functional reference of the Clay v1.5 encoder, for parity tests.

Provenance: transcribed from the arithmetic of the official Clay code, Clay-foundation/model
(Apache-2.0, Copyright Clay Foundation): ``claymodel/model.py`` (``Encoder.forward`` with
``mask_ratio=0, shuffle=False``), ``claymodel/factory.py`` / ``claymodel/embedding.py``
(``DynamicEmbedding``, ``WavesTransformer``, ``FCBlock``), ``claymodel/layers.py`` /
``claymodel/backbone.py`` (``Transformer`` from lucidrains/vit-pytorch, MIT) and
``claymodel/utils.py`` (``posemb_sincos_1d``, ``posemb_sincos_2d_with_gsd``).

It is written deliberately *without* modules: every step reads the official state-dict key
names from a plain ``dict`` of tensors and uses explicit math (``torch.nn.functional`` only for
GELU / LayerNorm / conv2d), including an explicit post-norm multi-head attention in place of
``nn.TransformerEncoderLayer`` and explicit softmax attention in place of SDPA. So the test
checks both the key names of :mod:`pipeline.models.clay` and its arithmetic. ``random_state``
builds a random state dict of the official layout for a given shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def posemb_sincos_1d(waves: Tensor, dim: int, temperature: int = 10000) -> Tensor:
    omega = torch.arange(dim // 2) / (dim // 2 - 1)
    omega = 1.0 / (temperature**omega)
    scaled = waves[:, None] * omega[None, :]
    return torch.cat((scaled.sin(), scaled.cos()), dim=1)


def posemb_sincos_2d_with_gsd(h: int, w: int, dim: int, gsd: Tensor, temperature: int = 10000) -> Tensor:
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    omega = torch.arange(dim // 4) / (dim // 4 - 1)
    omega = 1.0 / (temperature ** (2 * omega / dim)) * (gsd / 1.0)
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1)


def _linear(sd: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    out = x @ sd[name + ".weight"].T
    bias = sd.get(name + ".bias")
    return out if bias is None else out + bias


def _layer_norm(sd: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps=1e-5)


def _softmax_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return scores.softmax(dim=-1) @ v


def _waves_transformer_layer(sd: dict[str, Tensor], name: str, x: Tensor, heads: int) -> Tensor:
    """``nn.TransformerEncoderLayer`` (post-norm, GELU, no dropout) on unbatched ``[N, E]``."""
    n, e = x.shape
    qkv = x @ sd[name + ".self_attn.in_proj_weight"].T + sd[name + ".self_attn.in_proj_bias"]
    q, k, v = (t.reshape(n, heads, e // heads).transpose(0, 1) for t in qkv.chunk(3, dim=-1))
    attn = _softmax_attention(q, k, v).transpose(0, 1).reshape(n, e)
    x = _layer_norm(sd, name + ".norm1", x + _linear(sd, name + ".self_attn.out_proj", attn))
    ff = _linear(sd, name + ".linear2", F.gelu(_linear(sd, name + ".linear1", x)))
    return _layer_norm(sd, name + ".norm2", x + ff)


def patch_embedding(sd: dict[str, Tensor], pixels: Tensor, waves: Tensor, wave_heads: int = 4) -> Tensor:
    pe = "patch_embedding."
    wg = pe + "weight_generator."
    wave_dim = sd[wg + "weight_tokens"].shape[1]
    n_latent = sd[wg + "weight_tokens"].shape[0]
    dim = sd["cls_token"].shape[-1]
    patch = math.isqrt(sd[wg + "fc_weight.weight"].shape[0] // dim)
    e = posemb_sincos_1d(waves, wave_dim)
    e = e + F.gelu(_linear(sd, pe + "fclayer.l2", F.gelu(_linear(sd, pe + "fclayer.l1", e))))
    x = torch.cat([sd[wg + "weight_tokens"], e, sd[wg + "bias_token"]], dim=0)
    out = x
    layer = 0
    while f"{wg}encoder.layers.{layer}.linear1.weight" in sd:
        out = _waves_transformer_layer(sd, f"{wg}encoder.layers.{layer}", out, wave_heads)
        layer += 1
    weights = _linear(sd, wg + "fc_weight", out[n_latent:-1] + x[n_latent:-1])  # [C, D*P*P]
    bias = _linear(sd, wg + "fc_bias", out[-1])  # [D]
    c = weights.shape[0]
    # "cin (cout k1 k2) -> cout cin k1 k2"
    kernel = weights.reshape(c, dim, patch, patch).permute(1, 0, 2, 3).contiguous()
    y = F.conv2d(pixels, kernel * 0.02, bias=bias, stride=patch)  # [B, D, h, w]
    b = y.shape[0]
    return y.reshape(b, dim, -1).permute(0, 2, 1)  # "b c h w -> b (h w) c"


def encoder_forward(sd: dict[str, Tensor], cube: dict[str, Tensor], dim_head: int = 64) -> Tensor:
    """Reference ``Encoder(mask_ratio=0, shuffle=False)(cube)[0]`` from state dict ``sd``."""
    pixels, time, latlon = cube["pixels"], cube["time"], cube["latlon"]
    gsd, waves = cube["gsd"], cube["waves"]
    patches = patch_embedding(sd, pixels, waves)
    b, length, dim = patches.shape
    grid = int(math.sqrt(length))
    pos = posemb_sincos_2d_with_gsd(grid, grid, dim - 8, torch.as_tensor(gsd, dtype=torch.float32))
    meta = torch.hstack((time, latlon))
    enc = torch.cat((pos[None].repeat(b, 1, 1), meta[:, None, :].repeat(1, length, 1)), dim=-1)
    x = torch.cat((sd["cls_token"].repeat(b, 1, 1), patches + enc), dim=1)
    layer = 0
    while f"transformer.layers.{layer}.0.to_qkv.weight" in sd:
        name = f"transformer.layers.{layer}"
        h = _layer_norm(sd, name + ".0.norm", x)
        qkv = h @ sd[name + ".0.to_qkv.weight"].T
        n = x.shape[1]
        q, k, v = (t.reshape(b, n, -1, dim_head).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        attn = _softmax_attention(q, k, v).transpose(1, 2).reshape(b, n, -1)
        x = attn @ sd[name + ".0.to_out.weight"].T + x
        h = _layer_norm(sd, name + ".1.net.0", x)
        h = _linear(sd, name + ".1.net.3", F.gelu(_linear(sd, name + ".1.net.1", h)))
        x = h + x
        layer += 1
    return _layer_norm(sd, "transformer.norm", x)


def random_state(
    dim: int = 64,
    depth: int = 2,
    heads: int = 2,
    dim_head: int = 64,
    mlp_dim: int = 128,
    patch: int = 8,
    wave_dim: int = 32,
    n_latent: int = 16,
    wave_ff: int = 64,
    seed: int = 0,
) -> dict[str, Tensor]:
    """A random state dict with the official ``Encoder`` key names and shapes."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.1) -> Tensor:
        return torch.randn(*shape, generator=g) * scale

    def ln(prefix: str, width: int) -> dict[str, Tensor]:
        return {prefix + ".weight": 1 + r(width), prefix + ".bias": r(width)}

    sd: dict[str, Tensor] = {"cls_token": r(1, 1, dim, scale=0.5)}
    wg = "patch_embedding.weight_generator."
    layer = wg + "encoder.layers.0."
    sd |= {
        layer + "self_attn.in_proj_weight": r(3 * wave_dim, wave_dim, scale=0.2),
        layer + "self_attn.in_proj_bias": r(3 * wave_dim),
        layer + "self_attn.out_proj.weight": r(wave_dim, wave_dim, scale=0.2),
        layer + "self_attn.out_proj.bias": r(wave_dim),
        layer + "linear1.weight": r(wave_ff, wave_dim, scale=0.2),
        layer + "linear1.bias": r(wave_ff),
        layer + "linear2.weight": r(wave_dim, wave_ff, scale=0.2),
        layer + "linear2.bias": r(wave_dim),
    }
    sd |= ln(layer + "norm1", wave_dim) | ln(layer + "norm2", wave_dim)
    sd |= {
        wg + "fc_weight.weight": r(patch * patch * dim, wave_dim, scale=1.0),
        wg + "fc_weight.bias": r(patch * patch * dim),
        wg + "fc_bias.weight": r(dim, wave_dim),
        wg + "fc_bias.bias": r(dim),
        wg + "weight_tokens": r(n_latent, wave_dim, scale=0.5),
        wg + "bias_token": r(1, wave_dim, scale=0.5),
    }
    for fc in ("l1", "l2"):
        sd |= {f"patch_embedding.fclayer.{fc}.weight": r(wave_dim, wave_dim, scale=0.2),
               f"patch_embedding.fclayer.{fc}.bias": r(wave_dim)}  # fmt: skip
    inner = heads * dim_head
    for i in range(depth):
        name = f"transformer.layers.{i}"
        sd |= ln(name + ".0.norm", dim) | ln(name + ".1.net.0", dim)
        sd |= {
            name + ".0.to_qkv.weight": r(3 * inner, dim, scale=dim**-0.5),
            name + ".0.to_out.weight": r(dim, inner, scale=inner**-0.5),
            name + ".1.net.1.weight": r(mlp_dim, dim, scale=dim**-0.5),
            name + ".1.net.1.bias": r(mlp_dim),
            name + ".1.net.3.weight": r(dim, mlp_dim, scale=mlp_dim**-0.5),
            name + ".1.net.3.bias": r(dim),
        }
    sd |= ln("transformer.norm", dim)
    return sd
