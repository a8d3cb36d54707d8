"""ONNX export with dynamic batch, height and width, checked with ONNX Runtime (mmlavit/cli/onnx_export.py).

    python tools/export_onnx.py configs/demo/upernet_lavit_t_shapes_ade.py --out lavit_upernet.onnx
    python tools/export_onnx.py CONFIG CHECKPOINT --part backbone --out backbone.onnx [--allow-partial-checkpoint]
"""
import mmlavit.cli.warning_filters  # noqa: F401  hides the warnings that say nothing to the user
from mmlavit.cli.errors import exit_on_user_error
from mmlavit.cli.onnx_export import main

if __name__ == '__main__':
    with exit_on_user_error():
        main()
