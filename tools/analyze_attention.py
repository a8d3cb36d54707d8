"""Attention pictures, cell matrices and saturation of a LaViT model (mmlavit/cli/attention_analysis.py).

    python tools/analyze_attention.py CONFIG IMAGE [--checkpoint CKPT] [--compare pvtv2-b1]
"""
from mmlavit.cli.attention_analysis import main

if __name__ == '__main__':
    main()
