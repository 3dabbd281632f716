"""The faithful miniature of the `Wan-AI/Wan2.2-TI2V-5B-Diffusers` folder that the real-base tests use.

Its builder lives in `flashcli.lab.wan22_folder` (what is kept and what is shrunk is described there), so
that `scripts/device/real_base_check.py` builds the full-size folder with the same code; the tests import
it from here.
"""

from flashcli.lab.wan22_folder import (  # noqa: F401 - re-exported for the tests
    MINIATURE_TRANSFORMER,
    MINIATURE_UMT5,
    MINIATURE_VAE,
    TEXT_DIM,
    make_wan22_ti2v_miniature,
    tokenizer_corpus,
)
