"""Attention pictures, cell matrices and saturation of a LaViT model (mmlavit/cli/attention_analysis.py).

    python tools/analyze_attention.py CONFIG IMAGE [--checkpoint CKPT] [--compare pvtv2-b1]
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.attention_analysis import main
from mmlavit.cli.errors import exit_on_user_error

if __name__ == '__main__':
    with exit_on_user_error():
        main()
