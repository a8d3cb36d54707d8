"""Hides the warnings that the tools' dependencies print on every run and that ask nothing of the user.

Each script in tools/ imports this module before it loads a config. ``import mmlavit`` does not: a library
leaves the warnings filters to the program that uses it.
"""
import warnings


def hide_noise() -> None:
    """Installs the filters."""
    # mmengine 0.10.7 imports pkg_resources whenever it looks up an installed package (every mmdet::, mmseg:: or
    # mmpretrain:: base config), and setuptools deprecates that module with a warning at each import.
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API', category=UserWarning)
    # mmseg's own heads build their losses with its deprecated build_loss.
    warnings.filterwarnings('ignore', message='``build_loss`` would be deprecated soon', category=UserWarning)
    # mmseg's visualization hook, on every test without --show-dir.
    warnings.filterwarnings('ignore', message='The draw is False', category=UserWarning)


hide_noise()
