"""Params and FLOPs of LaViT-T/S/B beside PVTv2, Swin-T and MiT (mmlavit/cli/flops.py).

    python tools/get_flops.py                      # 224x224, all models
    python tools/get_flops.py --shape 800 1333 --models lavit-s pvtv2-b2
    python tools/get_flops.py --config configs/retinanet_lavit-s_fpn_1x_coco.py --shape 800 1280   # whole model
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.flops import main

if __name__ == '__main__':
    with exit_on_user_error():
        main()
