"""Params and FLOPs of LaViT-T/S/B beside PVTv2, Swin-T and MiT (mmlavit/cli/flops.py).

    python tools/get_flops.py                      # 224x224, all models
    python tools/get_flops.py --shape 800 1333 --models lavit-s pvtv2-b2
"""
from mmlavit.cli.flops import main

if __name__ == '__main__':
    main()
