"""`make demo`: a LaViT-T Mask R-CNN trained, evaluated and drawn on CPU (mmlavit/cli/demos.py).

    python tools/demo.py
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.demos import detection_demo

if __name__ == '__main__':
    detection_demo()
