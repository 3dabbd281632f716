"""Root of the test tree. pytest imports it (and so puts `tests/` on the import path) before the
test folders, which lets `tests/cli` and `tests/core` share `random_wan.py`."""
