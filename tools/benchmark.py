"""Latency, training memory, params and FLOPs of LaViT beside PVTv2, Swin-T and MiT (mmlavit/cli/benchmark.py).

    python tools/benchmark.py
    python tools/benchmark.py --sizes 800x1333 --models lavit-s pvtv2-b2 swin-t --repeats 5
"""
from mmlavit.cli.benchmark import main
from mmlavit.cli.errors import exit_on_user_error

if __name__ == '__main__':
    with exit_on_user_error():
        main()
