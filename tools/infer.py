"""Draw a detector's boxes and masks, a segmentor's class map or a classifier's class on an image, or on each
image of a folder (mmlavit/cli/infer.py).

    python tools/infer.py IMAGE_OR_FOLDER CONFIG CHECKPOINT --out DIR [--score-thr 0.3] [--device cpu]
        [--allow-partial-checkpoint]
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.infer import main

if __name__ == '__main__':
    with exit_on_user_error():
        main()
