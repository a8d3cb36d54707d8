"""Evaluate a checkpoint of an mmdet, mmseg or mmpretrain model (the config's default_scope decides;
mmlavit/cli/testing.py).

    python tools/test.py configs/upernet_lavit-s_8xb2-160k_ade20k-512x512.py work_dirs/.../iter_160000.pth
        [--tta] [--out FILE.pkl] [--show-dir DIR] [--allow-partial-checkpoint]
        [--work-dir DIR] [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.testing import main

if __name__ == '__main__':
    with exit_on_user_error():
        main()
