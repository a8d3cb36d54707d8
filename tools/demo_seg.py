"""`make demo-seg`: a LaViT-T UperNet trained and tested on CPU (mmlavit/cli/demos.py).

    python tools/demo_seg.py
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.demos import segmentation_demo

if __name__ == '__main__':
    segmentation_demo()
