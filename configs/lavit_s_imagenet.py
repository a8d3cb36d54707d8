# configs/lavit-s_16xb64_in1k.py under its short name.
_base_ = './lavit-s_16xb64_in1k.py'
