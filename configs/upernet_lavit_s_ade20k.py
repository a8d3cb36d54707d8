# configs/upernet_lavit-s_8xb2-160k_ade20k-512x512.py under its short name.
_base_ = './upernet_lavit-s_8xb2-160k_ade20k-512x512.py'
