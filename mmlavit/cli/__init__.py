"""What the command-line tools in tools/ are made of.

``import mmlavit`` does not import this package: it holds what only the tools
need (Runner set-up, FLOP counting, benchmarking, attention analysis,
ablation, ONNX export, the generated demo datasets). Each script in tools/ is
a thin command line over one module here.
"""
