from .checkpoint import (TRUST_ENV, CheckpointError, IncompleteCheckpointError, UntrustedCheckpointError,
                         incomplete_checkpoint_message, is_incomplete_checkpoint, load_backbone_state_dict,
                         load_from_local, register_safe_local_loader, strip_prefix, unsafe_globals, weights_of)

__all__ = [
    'TRUST_ENV', 'CheckpointError', 'IncompleteCheckpointError', 'UntrustedCheckpointError',
    'incomplete_checkpoint_message', 'is_incomplete_checkpoint', 'load_backbone_state_dict', 'load_from_local',
    'register_safe_local_loader', 'strip_prefix', 'unsafe_globals', 'weights_of'
]
