from .checkpoint import (
                         TRUST_ENV,
                         CheckpointError,
                         IncompleteCheckpointError,
                         UntrustedCheckpointError,
                         incomplete_checkpoint_message,
                         is_incomplete_checkpoint,
                         is_trusted,
                         load_file_safely,
                         load_from_local,
                         strip_prefix,
                         unsafe_globals,
                         weights_of,
)
from .checkpoint_fit import (
                         ALLOW_PARTIAL_OPTION,
                         CheckpointMismatchError,
                         LaViTWeights,
                         check_checkpoint_fits,
                         check_state_dict_fits,
                         describe_checkpoint,
                         find_lavit_weights,
                         load_backbone_state_dict,
                         matching_arch,
)
from .remote_checkpoint import download_checkpoint, is_remote_checkpoint, register_safe_checkpoint_loaders

__all__ = [
    'TRUST_ENV', 'CheckpointError', 'IncompleteCheckpointError', 'UntrustedCheckpointError',
    'incomplete_checkpoint_message', 'is_incomplete_checkpoint', 'is_trusted', 'load_file_safely',
    'load_from_local', 'strip_prefix', 'unsafe_globals', 'weights_of', 'ALLOW_PARTIAL_OPTION',
    'CheckpointMismatchError', 'LaViTWeights', 'check_checkpoint_fits', 'check_state_dict_fits',
    'describe_checkpoint', 'find_lavit_weights', 'load_backbone_state_dict', 'matching_arch',
    'download_checkpoint', 'is_remote_checkpoint', 'register_safe_checkpoint_loaders'
]
