"""Turn a checkpoint with a LaViT under a prefix into a backbone-only one (mmlavit/cli/convert.py).

    python tools/convert_checkpoint.py work_dirs/lavit-s_16xb64_in1k/epoch_300.pth lavit_s_backbone.pth
        [--prefix backbone.] [--allow-custom-arch]
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.convert import main
from mmlavit.cli.errors import exit_on_user_error

if __name__ == '__main__':
    with exit_on_user_error():
        main()
