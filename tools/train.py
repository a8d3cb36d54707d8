"""Train an mmdet, mmseg or mmpretrain model (the config's default_scope decides; mmlavit/cli/training.py).

    python tools/train.py configs/mask-rcnn_lavit-s_fpn_1x_coco.py [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--auto-scale-lr] [--allow-partial-checkpoint] [--cfg-options key=value ...]
        [--launcher none|pytorch|slurm|mpi]
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.training import main

if __name__ == '__main__':
    with exit_on_user_error():
        main()
