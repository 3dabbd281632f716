"""The FLASH model: base specs, adapter, motion-aligned trainer, sampler.

Kept import-light on purpose: torch and diffusers load only when a submodule is imported,
so `flash --help` stays fast. Import what you need from the submodules, e.g.
`from flashcli.core.specs import load_base`.
"""
