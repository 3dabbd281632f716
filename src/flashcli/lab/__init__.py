"""Research helpers that bench/ and scripts/ share: pretraining the `tiny` base, the FigureWorld
keypoint detector, the benchmark's scores and evaluation numbers.

The product (cli, library, video, core, figureworld) never imports this package; an import-linter
contract in pyproject.toml checks it. Importing it is cheap: submodules load their own dependencies.
"""
