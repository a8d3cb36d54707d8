"""`make demo`: a LaViT-T Mask R-CNN trained, evaluated and drawn on CPU (mmlavit/cli/demos.py).

    python tools/demo.py
"""
from mmlavit.cli.demos import detection_demo

if __name__ == '__main__':
    detection_demo()
