"""Writes the LaViT twin of an mmdet, mmseg or mmpretrain config (mmlavit/cli/adapt_config.py).

    python tools/adapt_config.py mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py --arch t \
        --out my_configs/faster-rcnn_lavit-t_fpn_1x_coco.py
    python tools/adapt_config.py my_configs/my_r50_detector.py --arch s --checkpoint lavit_s_in1k.pth \
        --backbone-options frozen_stages=1 --out my_configs/my_lavit-s_detector.py
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.adapt_config import main
from mmlavit.cli.errors import exit_on_user_error

if __name__ == '__main__':
    with exit_on_user_error():
        main()
