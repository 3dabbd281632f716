"""A `Wan-AI/Wan2.2-TI2V-5B-Diffusers` folder with random weights: the same layout, class names and config
keys, and a real sentencepiece tokenizer trained here on text written here. Nothing is downloaded.

Two sizes: the faithful miniature (tiny widths, built in about a second on a CPU; the tests' base) and the
full size (`FULL_SIZE`, the published widths from `flashcli.core.memory_plan`; built on the meta device and
materialised on a GPU with a cheap init, for `scripts/device/real_base_check.py`).

What the miniature keeps and what it shrinks (the full-size values are in the comments):
- model_index.json: the real one's entries as they stand (WanPipeline, `expand_timesteps: true`,
  `boundary_ratio: null`, `transformer_2: [null, null]`, tokenizer class T5TokenizerFast).
- scheduler/: UniPCMultistepScheduler with the conversion script's settings (flow_prediction, flow sigmas,
  flow_shift 5.0 for TI2V), saved by diffusers itself so every key is the class's own.
- transformer/: WanTransformer3DModel with the real keys and the real 48 in/out channels, patch (1, 2, 2),
  qk_norm, cross_attn_norm, eps, rope_max_seq_len; width 2 heads x 16 (real 24 x 128), 2 layers (30).
  Sharded with an index, as the real transformer/ is.
- vae/: AutoencoderKLWan with Wan 2.2's layout: 48 latent channels, residual blocks, 2x2 pixel patching
  (12 in/out channels), x16 space and x4 time, dim_mult [1, 2, 4, 4], 2 res blocks, the real latents_mean
  and latents_std, and the real config's `clip_output: false` (a key diffusers does not read); widths
  base_dim 4 / decoder_base_dim 8 (real 160 / 256).
- text_encoder/: UMT5EncoderModel, gated-gelu, 32 relative-attention buckets as UMT5-XXL; d_model 32
  (4096), 2 layers (24); the vocabulary is the tokenizer's plus 300 sentinels, padded to a multiple of 128
  as UMT5's 256,384 = 256,000 + 300, rounded up, is.
- tokenizer/: spiece.model (a sentencepiece unigram model: pad 0, eos 1, unk 2, no bos, as T5's),
  tokenizer.json built from it, tokenizer_config.json and special_tokens_map.json with 300 <extra_id_N>
  sentinels: the files of the real tokenizer/ folder, loaded by `AutoTokenizer.from_pretrained`.

Sources (facts only): diffusers' scripts/convert_wan_to_diffusers.py (the "Wan2.2-TI2V-5B" transformer
config, `vae22_diffusers_config`, the UniPC scheduler and `WanPipeline(..., expand_timesteps=True)`);
diffusers' pipelines/wan/pipeline_wan.py (`expand_timesteps`, `boundary_ratio`); the Wan2.2 repository's
wan/configs/wan_ti2v_5B.py (dim 3072, ffn 14336, 30 layers, 24 heads, vae_stride (4, 16, 16), 121 frames,
24 fps, sample_shift 5.0, t5 tokenizer google/umt5-xxl); the published vae/config.json and model_index.json
as quoted by projects that pin them; google/umt5-xxl's config (d_model 4096, d_ff 10240, 64 heads, 24
layers, vocabulary 256,384).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from flashcli.core.memory_plan import UMT5_XXL, WAN22_TI2V_5B_TRANSFORMER, WAN22_VAE

# ----- the published values that are kept as they are ---------------------------------------------

MODEL_INDEX: dict[str, Any] = {
    "_class_name": "WanPipeline",
    "_diffusers_version": "0.35.0.dev0",
    "boundary_ratio": None,
    "expand_timesteps": True,
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "UMT5EncoderModel"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "transformer_2": [None, None],
    "vae": ["diffusers", "AutoencoderKLWan"],
}
FLOW_SHIFT = 5.0  # the conversion script's TI2V value; Wan2.2's sample_shift
TEXT_MAX_LENGTH = 512  # WanPipeline's max_sequence_length
SENTINELS = 300  # UMT5's <extra_id_N> tokens
VOCAB_MULTIPLE = 128

# The real Wan 2.2 VAE's latent statistics (vae22_diffusers_config), 48 channels each.
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]  # fmt: skip
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]  # fmt: skip

# ----- the shrunk widths ----------------------------------------------------------------------------

TEXT_DIM = 32  # UMT5 d_model and the transformer's text_dim (both 4096 in the real folder)

# The published configs (`flashcli.core.memory_plan`) with only the widths shrunk: every other key is the
# real folder's by construction.
MINIATURE_TRANSFORMER: dict[str, Any] = {
    **WAN22_TI2V_5B_TRANSFORMER,
    "patch_size": [1, 2, 2],
    "num_attention_heads": 2,  # 24
    "attention_head_dim": 16,  # 128
    "text_dim": TEXT_DIM,
    "freq_dim": 32,  # 256
    "ffn_dim": 64,  # 14336
    "num_layers": 2,  # 30
    "image_dim": None,
    "added_kv_proj_dim": None,
    "pos_embed_seq_len": None,
}
MINIATURE_VAE: dict[str, Any] = {
    **WAN22_VAE,
    "base_dim": 4,  # 160
    "decoder_base_dim": 8,  # 256
    "attn_scales": [],
    "dropout": 0.0,
    "latents_mean": WAN22_LATENTS_MEAN,
    "latents_std": WAN22_LATENTS_STD,
}
# Keys of the real vae/config.json that this diffusers' AutoencoderKLWan does not take.
VAE_CONFIG_EXTRAS: dict[str, Any] = {"clip_output": False}
MINIATURE_UMT5: dict[str, Any] = {
    **{key: value for key, value in UMT5_XXL.items() if key != "vocab_size"},  # the tokenizer sets it
    "d_model": TEXT_DIM,
    "d_kv": 8,  # 64
    "d_ff": 64,  # 10240
    "num_layers": 2,  # 24
    "num_decoder_layers": 2,
    "num_heads": 4,  # 64
    "layer_norm_epsilon": 1e-6,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}

# ----- the tokenizer's training text ----------------------------------------------------------------

_WHO = [
    "a welder", "the carpenter", "a young dancer", "an old man", "a woman in a red coat", "the athlete",
    "a child", "the chef", "two friends", "a nurse", "the painter", "a factory worker", "the gardener",
    "a boxer", "the violinist", "a mechanic",
]  # fmt: skip
_DOES = [
    "lifts", "waves", "turns", "bends over", "reaches for", "hammers", "welds", "throws", "catches", "pushes",
    "pulls", "points at", "carries", "polishes", "paints", "kicks",
]  # fmt: skip
_WHAT = [
    "the metal pipe", "a heavy box", "her left arm", "a wooden plank", "the ball", "his right hand",
    "a steel plate", "the blue door", "a glass of water", "the ladder", "a bucket of sand", "the bicycle",
]  # fmt: skip
_HOW = [
    "slowly", "quickly", "with great care", "twice in a row", "in a bright kitchen", "on a dark stage",
    "outside in the rain", "at a crowded workbench", "while the camera pans left", "in slow motion",
]  # fmt: skip


def tokenizer_corpus(lines: int = 320, seed: int = 0) -> list[str]:
    """A few hundred short captions of people doing things, the kind of prompt flash's users write."""
    rng = random.Random(seed)
    combos = list(itertools.product(_WHO, _DOES, _WHAT, _HOW))
    return [f"{w.capitalize()} {d} {o} {h}." for w, d, o, h in rng.sample(combos, lines)]


# ----- the two sizes -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FolderConfigs:
    """The constructor arguments of a folder's three models (the text encoder's vocab_size comes from the
    tokenizer, rounded up; a larger `vocab_size` here pads the embedding to it, as UMT5-XXL's 256,384)."""

    transformer: Mapping[str, Any]
    vae: Mapping[str, Any]
    umt5: Mapping[str, Any]


MINIATURE = FolderConfigs(MINIATURE_TRANSFORMER, MINIATURE_VAE, MINIATURE_UMT5)


def full_size() -> FolderConfigs:
    """Wan 2.2 TI2V-5B's published widths (`flashcli.core.memory_plan`) with the miniature's other keys."""
    from flashcli.core import memory_plan

    vae = {**MINIATURE_VAE, **memory_plan.WAN22_VAE}
    umt5 = {
        **MINIATURE_UMT5,
        **memory_plan.UMT5_XXL,
        "num_decoder_layers": memory_plan.UMT5_XXL["num_layers"],
    }
    return FolderConfigs(dict(memory_plan.WAN22_TI2V_5B_TRANSFORMER), vae, umt5)


@dataclasses.dataclass(frozen=True)
class FastInit:
    """Build on the meta device, then materialise on `device` with a cheap init (normal_ with `std`;
    norms 1, biases 0): seconds for 10 billion weights on a GPU, where the classes' own init takes minutes
    on a CPU. The transformer and the text encoder are saved in `dtype` (Wan ships bf16), the VAE in fp32."""

    device: str = "cuda"
    dtype: torch.dtype = torch.bfloat16
    std: float = 0.02


# ----- building -------------------------------------------------------------------------------------


def make_wan22_ti2v_miniature(folder: Path, seed: int = 0) -> Path:
    """Write the miniature folder at `folder` (created; must not exist yet) and return it."""
    return make_wan22_ti2v_folder(folder, MINIATURE, seed=seed)


def make_wan22_ti2v_folder(
    folder: Path, configs: FolderConfigs, seed: int = 0, fast: FastInit | None = None
) -> Path:
    """Write a folder of `configs` at `folder` (created; must not exist yet) and return it. Without
    `fast`, every model takes its class's own init on the CPU (the miniature's weights, seed for seed)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    spiece = _train_sentencepiece(tokenizer_corpus(seed=seed))
    tokenizer_size = _write_tokenizer(folder / "tokenizer", spiece)
    vocab_size = max(_round_up(tokenizer_size, VOCAB_MULTIPLE), int(configs.umt5.get("vocab_size", 0)))
    torch.manual_seed(seed)
    _write_transformer(folder / "transformer", configs.transformer, fast)
    _write_vae(folder / "vae", configs.vae, fast)
    _write_text_encoder(folder / "text_encoder", {**configs.umt5, "vocab_size": vocab_size}, fast)
    _write_scheduler(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2, sort_keys=True) + "\n")
    return folder


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _train_sentencepiece(lines: list[str]) -> bytes:
    """A unigram sentencepiece model with T5's special ids (pad 0, eos 1, unk 2, no bos)."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="unigram",
        vocab_size=256,
        hard_vocab_limit=False,  # the corpus decides how many pieces it supports
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        num_threads=1,  # one thread: the same pieces on every machine
        minloglevel=2,
    )
    return model.getvalue()


def _write_tokenizer(folder: Path, spiece: bytes) -> int:
    """tokenizer/ as the real folder has it; returns the tokenizer's size (pieces + sentinels).

    tokenizer.json is built from the sentencepiece model's own pieces and scores, so loading needs neither
    protobuf nor a slow-to-fast conversion, as with the real folder's tokenizer.json.
    """
    import sentencepiece
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    folder.mkdir()
    (folder / "spiece.model").write_bytes(spiece)
    processor = sentencepiece.SentencePieceProcessor(model_proto=spiece)
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    sentinels = [f"<extra_id_{i}>" for i in range(SENTINELS)]
    # T5 puts the sentinels after the pieces, highest number first.
    backend = Tokenizer(Unigram([*pieces, *((s, 0.0) for s in reversed(sentinels))], unk_id=2))
    # sentencepiece's nmt_nfkc normaliser, less its precompiled map (reading that needs protobuf).
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    backend.add_special_tokens([AddedToken(t, special=True) for t in ["<pad>", "</s>", "<unk>", *sentinels]])
    backend.save(str(folder / "tokenizer.json"))
    special = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    config = {
        **special,
        "tokenizer_class": "T5Tokenizer",
        "extra_ids": SENTINELS,
        "additional_special_tokens": sentinels,
        "model_max_length": TEXT_MAX_LENGTH,
        "sp_model_kwargs": {},
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special_map = {**special, "additional_special_tokens": sentinels}
    (folder / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    return backend.get_vocab_size(with_added_tokens=True)


def _shard_size(module: torch.nn.Module, shards: int) -> int:
    """A max_shard_size (bytes) that splits `module`'s weights into about `shards` files."""
    total = sum(p.numel() * p.element_size() for p in module.parameters())
    return total // shards + 1


def _build(
    make: Callable[[], torch.nn.Module], fast: FastInit | None, dtype: torch.dtype | None
) -> torch.nn.Module:
    """`make()` as its class initialises it, or (with `fast`) built on meta and materialised cheaply."""
    if fast is None:
        return make()
    with torch.device("meta"):
        module = make()
    if dtype is not None and dtype != next(module.parameters()).dtype:
        module = module.to(dtype)  # free on meta: the weights are allocated once, in the saved dtype
    module = module.to_empty(device=fast.device)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            elif "norm" in _owner(name):
                parameter.fill_(1.0)  # a norm's scale: 1 keeps the activations' size through 30 blocks
            else:
                parameter.normal_(0.0, fast.std)
    return module


def _owner(parameter_name: str) -> str:
    """The name of the module holding a parameter: 'norm_q' for 'blocks.0.attn1.norm_q.weight'."""
    return parameter_name.rpartition(".")[0].rpartition(".")[2]


def _write_transformer(folder: Path, config: Mapping[str, Any], fast: FastInit | None) -> None:
    from diffusers import WanTransformer3DModel

    dtype = fast.dtype if fast is not None else None
    transformer = _build(lambda: WanTransformer3DModel(**config), fast, dtype)
    transformer.save_pretrained(folder, max_shard_size=_shard_size(transformer, 3))


def _write_vae(folder: Path, config: Mapping[str, Any], fast: FastInit | None) -> None:
    from diffusers import AutoencoderKLWan

    _build(lambda: AutoencoderKLWan(**config), fast, None).save_pretrained(folder)
    config_path = folder / "config.json"
    saved = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**saved, **VAE_CONFIG_EXTRAS}, indent=2, sort_keys=True) + "\n")


def _write_text_encoder(folder: Path, config: Mapping[str, Any], fast: FastInit | None) -> None:
    from transformers import UMT5Config, UMT5EncoderModel

    dtype = fast.dtype if fast is not None else None
    encoder = _build(lambda: UMT5EncoderModel(UMT5Config(**config)), fast, dtype)
    encoder.save_pretrained(folder, max_shard_size=_shard_size(encoder, 2))


def _write_scheduler(folder: Path) -> None:
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=FLOW_SHIFT,
    )
    scheduler.save_pretrained(folder)
