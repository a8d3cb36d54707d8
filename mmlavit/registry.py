"""mmlavit's registries: children of mmengine's roots with the scope 'mmlavit'.

``type='mmlavit.LaViT'`` resolves from mmdet's, mmseg's and mmpretrain's
registries alike (mmengine looks the 'mmlavit' scope up among the root's
children and imports its locations when a name is looked up: the training
tool's checkpoint hook is found there without ``import mmlavit`` loading it).
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmlavit', locations=['mmlavit.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmlavit',
                 locations=['mmlavit.engine', 'mmlavit.cli.safe_checkpoint'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope='mmlavit', locations=['mmlavit.engine'])
