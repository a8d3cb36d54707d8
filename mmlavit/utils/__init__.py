from .checkpoint import load_backbone_state_dict, register_trusted_local_loader, strip_prefix, weights_of
from .launch import (DatasetNotFoundError, build_runner, check_datasets, load_config, parse_runner_args,
                     setup_distributed)

__all__ = ['load_backbone_state_dict', 'register_trusted_local_loader', 'strip_prefix', 'weights_of',
           'DatasetNotFoundError',
           'build_runner', 'check_datasets', 'load_config', 'parse_runner_args',
           'setup_distributed']
