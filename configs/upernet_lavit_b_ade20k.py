# configs/upernet_lavit-b_8xb2-160k_ade20k-512x512.py under its short name.
_base_ = './upernet_lavit-b_8xb2-160k_ade20k-512x512.py'
