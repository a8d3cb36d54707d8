"""Train backbone variants under one detector, schedule and data set over seeds (mmlavit/cli/ablation.py).

    python tools/ablate.py                                     # the default variants, seeds 0 1 2
    python tools/ablate.py --variants lavit-t pvtv2-b1 'lavit-t-dp1=lavit-t,dp_weight=1.0' --seeds 0 1
    python tools/ablate.py --config configs/ablation/mask_rcnn_fpn_occluded_shapes.py --variants lavit-t lavit-t-no-dp
    python tools/ablate.py --config MY_COCO_CONFIG --data-root data/coco/ --iters 90000 --lr 1e-4
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.ablation import main
from mmlavit.cli.errors import exit_on_user_error

if __name__ == '__main__':
    with exit_on_user_error():
        main()
