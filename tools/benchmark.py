"""Latency, training memory, params and FLOPs of LaViT beside PVTv2, Swin-T and MiT (mmlavit/cli/benchmark.py).

    python tools/benchmark.py
    python tools/benchmark.py --sizes 800x1333 --models lavit-s pvtv2-b2 swin-t --repeats 5
    python tools/benchmark.py --compile --models lavit-s swin-t pvtv2-b2 --sizes 512x512 800x1333
"""
import mmlavit.cli.warning_filters  # noqa: F401  first, before the imports that warn
from mmlavit.cli.benchmark import main
from mmlavit.cli.errors import exit_on_user_error

if __name__ == '__main__':
    with exit_on_user_error():
        main()
