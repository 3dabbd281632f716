"""A small keypoint detector for FigureWorld figures, the benchmark's eye for motion on pixels.

`detector.load_detector()` gives a `KeypointDetector` whose `detect(frames)` returns pixel joint
positions in `flashcli.figureworld.JOINT_NAMES` order. `train.py` trains it, `evaluate.py` measures
its own error on held-out renders.
"""
