"""The data sets a config's loaders read, checked before the first iteration (tools/train.py and tools/test.py).

:func:`check_datasets` stops with a message naming the file and the fix where
mmdet or mmseg would fail later (a missing set, an annotation file cut short,
an image missing on disk) or would train or evaluate on something else than
the set the user has: COCO annotations that mmdet drops or gives another
class (category ids not among the config's classes, degenerate or
out-of-image boxes), an evaluation set without annotations, a training set
with none left, segmentation maps whose size differs from their image's,
that have colour channels or labels outside the classes. What mmdet would
drop without a word is counted and shown with examples. Image sizes come from
the files' headers.
"""
import inspect
import json
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
from mmengine.config import Config
from PIL import Image

# Where each dataset type expects its files, for the missing-data message.
EXPECTED_LAYOUTS = {
    'CocoDataset': 'data/coco/annotations/instances_{train,val}2017.json and data/coco/{train,val}2017/*.jpg '
                   '(COCO 2017 from https://cocodataset.org)',
    'ADE20KDataset': 'data/ade/ADEChallengeData2016/images/{training,validation}/*.jpg and '
                     'data/ade/ADEChallengeData2016/annotations/{training,validation}/*.png '
                     '(ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu)',
    'ImageNet': 'data/imagenet/{train,val}/<class>/*.JPEG or data/imagenet/meta/{train,val}.txt with the '
                'images beside it (ILSVRC2012 from https://image-net.org)',
}
#: How many segmentation maps are decoded for their labels (every map's header is read for its size).
LABEL_CHECK_MAPS = 100
_EXAMPLES = 3


class DatasetNotFoundError(FileNotFoundError):
    """A config points at a dataset that is not on disk."""


class DataCheckError(ValueError):
    """A data set that the run would fail on, or train or evaluate wrongly on; the message names the files."""


def iter_datasets(cfg: Config, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')
                  ) -> Iterator[dict]:
    """Every leaf dataset dict of the named dataloaders (through wrappers like RepeatDataset)."""
    for _, dataset in _datasets_of(cfg, loaders):
        yield dataset


def _datasets_of(cfg: Config, loaders) -> Iterator[Tuple[str, dict]]:
    """(loader name, leaf dataset dict) of the named dataloaders."""
    def leaves(dataset):
        if not isinstance(dataset, dict):
            return
        if 'dataset' in dataset:
            yield from leaves(dataset['dataset'])
        elif 'datasets' in dataset:
            for child in dataset['datasets']:
                yield from leaves(child)
        else:
            yield dataset

    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if loader_cfg:
            for dataset in leaves(loader_cfg.get('dataset')):
                yield loader, dataset


def dataset_paths(dataset: dict) -> List[str]:
    """The files and folders a dataset dict reads: its annotation file and data prefixes (or root/split)."""
    root = dataset.get('data_root') or ''
    paths = []
    if dataset.get('ann_file'):
        paths.append(osp.join(root, dataset['ann_file']))
    prefix = dataset.get('data_prefix') or {}
    for value in (prefix.values() if isinstance(prefix, dict) else [prefix]):
        if isinstance(value, str) and value:
            paths.append(osp.join(root, value))
    if not paths and root:
        # Split-based datasets (mmpretrain's ImageNet with split='train') read root/split/.
        paths.append(osp.join(root, dataset['split']) if dataset.get('split') else root)
    return paths


def check_json_complete(path: str) -> None:
    """Stops when a JSON annotation file is cut short (it must end with its closing bracket).

    Raises:
        DatasetNotFoundError: Naming the file.
    """
    with open(path, 'rb') as f:
        f.seek(max(0, osp.getsize(path) - 256))
        tail = f.read().rstrip()
    if not tail.endswith((b'}', b']')):
        end = tail[-40:].decode('utf-8', errors='replace')
        raise DatasetNotFoundError(
            f'annotation file {path} is cut short: it ends with {end!r} instead of the closing bracket of its '
            f'JSON (a download or copy that did not finish?). Copy it again.')


def _annotation_files(cfg: Config, loaders) -> List[str]:
    """The JSON annotation files of the loaders' datasets and of the matching evaluators (e.g. CocoMetric)."""
    files = [osp.join(dataset.get('data_root') or '', dataset['ann_file'])
             for dataset in iter_datasets(cfg, loaders) if dataset.get('ann_file')]
    for loader in loaders:
        evaluator = cfg.get(loader.replace('dataloader', 'evaluator'))
        for metric in (evaluator if isinstance(evaluator, list) else [evaluator]):
            if isinstance(metric, dict) and isinstance(metric.get('ann_file'), str):
                files.append(metric['ann_file'])
    return [path for path in dict.fromkeys(files) if path.endswith('.json')]


def _examples(items) -> str:
    items = list(items)
    return ', '.join(map(str, items[:_EXAMPLES])) + (f' and {len(items) - _EXAMPLES} more' if len(items) > _EXAMPLES
                                                     else '')


def _header_size(path: str) -> Optional[Tuple[int, int, str]]:
    """(height, width, PIL mode) of an image from its header, None for a file that is no image."""
    try:
        with Image.open(path) as image:
            return image.height, image.width, image.mode
    except (OSError, ValueError):
        return None


def _header_sizes(paths: List[str]) -> Dict[str, Optional[Tuple[int, int, str]]]:
    """:func:`_header_size` of each path; in one thread, as threads only contend for the GIL over PIL's parsing."""
    return {path: _header_size(path) for path in paths}


def _dataset_type(dataset: dict, scope: str):
    """The dataset class of a dataset dict, from the registry of the config's framework (None if unknown)."""
    from mmengine.registry import DATASETS, DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        try:
            return DATASETS.get(dataset.get('type'))
        except (KeyError, TypeError):
            return None


def _option(dataset: dict, dataset_type, name: str, default=None):
    """A dataset option from the config, else the dataset class's default."""
    if name in dataset:
        return dataset[name]
    if dataset_type is not None and name in inspect.signature(dataset_type.__init__).parameters:
        value = inspect.signature(dataset_type.__init__).parameters[name].default
        return default if value is inspect.Parameter.empty else value
    return default


def check_coco(dataset: dict, dataset_type, evaluation: bool, training: bool = False) -> List[str]:
    """Checks a COCO-format dataset as mmdet's CocoDataset reads it; returns the notes on what it drops.

    mmdet keeps the annotations whose category is one of the config's classes
    (matched by name with the file's categories) and whose box has a width
    and height of at least 1 and overlaps the image; in training it also
    drops the images left without annotations.

    Args:
        dataset (dict): The dataset config.
        dataset_type (type): Its dataset class (for the classes a config
            without ``metainfo`` trains), or None.
        evaluation (bool): The set is evaluated against its annotations.
        training (bool): The set is trained on.

    Raises:
        DataCheckError: Images missing on disk or unreadable, most
            annotations dropped, no annotation left for training, or an
            evaluation set without annotations.
    """
    root = dataset.get('data_root') or ''
    ann_file = osp.join(root, dataset['ann_file'])
    image_dir = osp.join(root, (dataset.get('data_prefix') or {}).get('img', ''))
    with open(ann_file) as f:
        coco = json.load(f)
    images = {image['id']: image for image in coco.get('images', [])}
    annotations = coco.get('annotations', [])
    if evaluation and not annotations:
        raise DataCheckError(f'{ann_file} has no annotations: the evaluation would report -1 for every metric. '
                             f'Give the annotated split of the set (or test with another ann_file).')
    category_ids = {category['id']: category['name'] for category in coco.get('categories', [])}
    classes = tuple((dataset.get('metainfo') or {}).get('classes') or
                    getattr(dataset_type, 'METAINFO', {}).get('classes', ()))
    trained_ids = {category_id for category_id, name in category_ids.items() if name in classes}
    dropped = defaultdict(list)
    kept_images = set()
    for annotation in annotations:
        category, image = annotation.get('category_id'), images.get(annotation.get('image_id'))
        x, y, w, h = annotation.get('bbox', (0, 0, 0, 0))
        where = f'annotation {annotation.get("id")} of image {annotation.get("image_id")}'
        if image is None:
            dropped['of images the file does not list'].append(where)
        elif category not in category_ids:
            shifted = ' (one lower than the file\'s ids?)' if category + 1 in category_ids else ''
            dropped[f'with category ids the file\'s categories do not have ({sorted(category_ids)}){shifted}'].append(
                f'{where} (id {category})')
        elif category not in trained_ids:
            dropped[f'of categories that are not the config\'s classes {classes}'].append(
                f'{where} ({category_ids[category]!r})')
        elif w < 1 or h < 1 or annotation.get('area', 1) <= 0:
            dropped['with boxes under 1 pixel wide or high, or no area'].append(f'{where} (bbox {[x, y, w, h]})')
        elif min(x + w, image.get('width', x + w)) <= max(x, 0) or min(y + h, image.get('height', y + h)) <= max(y, 0):
            dropped['with boxes outside their image'].append(f'{where} (bbox {[x, y, w, h]})')
        elif not annotation.get('iscrowd'):
            kept_images.add(image['id'])
    files = {image_id: osp.join(image_dir, image['file_name']) for image_id, image in images.items()}
    present = set()
    for folder in {osp.dirname(path) for path in files.values()}:
        if osp.isdir(folder):
            present.update(entry.path for entry in os.scandir(folder))
    missing = [path for path in files.values() if path not in present]
    if missing:
        raise DataCheckError(f'{len(missing)} of the {len(files)} images that {ann_file} lists are missing on disk '
                             f'({_examples(missing)}): restore them, or remove them from the annotation file.')
    sizes = _header_sizes(list(files.values()))
    unreadable = [path for path, size in sizes.items() if size is None]
    if unreadable:
        raise DataCheckError(f'{len(unreadable)} of the images that {ann_file} lists are not images that can be '
                             f'read ({_examples(unreadable)}): replace them, or remove them from the annotation file.')
    notes = []
    resized = [f'{files[image_id]} ({image.get("height")}x{image.get("width")} in the file, '
               f'{sizes[files[image_id]][0]}x{sizes[files[image_id]][1]} on disk)'
               for image_id, image in images.items()
               if (image.get('height'), image.get('width')) != sizes[files[image_id]][:2]]
    if resized:
        notes.append(f'{len(resized)} images have another size on disk than {ann_file} records, which the boxes '
                     f'and masks are drawn for: {_examples(resized)}')
    lost = sum(len(where) for where in dropped.values())
    if lost:
        details = '; '.join(f'{len(where)} {reason} (e.g. {_examples(where)})' for reason, where in dropped.items())
        summary = f'mmdet would drop {lost} of the {len(annotations)} annotations of {ann_file}: {details}'
        if 2 * lost > len(annotations):
            raise DataCheckError(f'{summary}. Most of the set would be lost: fix the annotation file or the '
                                 f'config\'s classes (metainfo.classes).')
        notes.append(summary)
    if training and not kept_images:
        raise DataCheckError(f'no image of {ann_file} has an annotation mmdet trains on: training would stop at '
                             f'its first batch. Check the annotation file and the config\'s classes.')
    if training and len(kept_images) < len(images):
        notes.append(f'{len(images) - len(kept_images)} of the {len(images)} training images of {ann_file} have no '
                     f'annotation left and are not trained on')
    return notes


def check_segmentation(dataset: dict, dataset_type, num_classes: Optional[int]) -> List[str]:
    """Checks an mmseg dataset of images and segmentation maps: every map there, of its image's size, one channel,
    with labels of the classes (the first :data:`LABEL_CHECK_MAPS` maps decoded).

    Raises:
        DataCheckError: Naming the files.
    """
    root, prefix = dataset.get('data_root') or '', dataset.get('data_prefix') or {}
    image_dir, map_dir = osp.join(root, prefix.get('img_path', '')), osp.join(root, prefix.get('seg_map_path', ''))
    image_suffix = _option(dataset, dataset_type, 'img_suffix', '.jpg')
    map_suffix = _option(dataset, dataset_type, 'seg_map_suffix', '.png')
    reduce_zero_label = _option(dataset, dataset_type, 'reduce_zero_label', False)
    ignore_index = _option(dataset, dataset_type, 'ignore_index', 255)
    pairs = {}
    for folder, _, names in os.walk(image_dir):
        for name in names:
            if name.endswith(image_suffix):
                relative = osp.relpath(osp.join(folder, name), image_dir)
                pairs[osp.join(folder, name)] = osp.join(map_dir, relative[:-len(image_suffix)] + map_suffix)
    missing = [path for path in pairs.values() if not osp.isfile(path)]
    if missing:
        raise DataCheckError(f'{len(missing)} images of {image_dir} have no segmentation map ({_examples(missing)})')
    sizes = _header_sizes([*pairs, *pairs.values()])
    unreadable = [path for path, size in sizes.items() if size is None]
    if unreadable:
        raise DataCheckError(f'{len(unreadable)} files of the set cannot be read as images ({_examples(unreadable)})')
    other_size = [f'{seg_map} ({sizes[seg_map][0]}x{sizes[seg_map][1]}, its image {sizes[image][0]}x'
                  f'{sizes[image][1]})' for image, seg_map in pairs.items() if sizes[image][:2] != sizes[seg_map][:2]]
    if other_size:
        raise DataCheckError(f'{len(other_size)} segmentation maps of {map_dir} have another size than their image '
                             f'({_examples(other_size)}): the labels would not lie on the pixels they name')
    coloured = [seg_map for seg_map in pairs.values() if sizes[seg_map][2] not in ('L', 'P', 'I', 'I;16', '1')]
    if coloured:
        raise DataCheckError(f'{len(coloured)} segmentation maps of {map_dir} have colour channels '
                             f'({_examples(coloured)}): a map holds one class index per pixel; save them as '
                             f'single-channel (grey or palette) PNGs')
    if num_classes is None:
        return []
    outside = []
    for seg_map in list(pairs.values())[:LABEL_CHECK_MAPS]:
        labels = np.unique(np.asarray(Image.open(seg_map)))
        if reduce_zero_label:
            labels = np.where(labels == 0, 255, labels - 1)
        labels = [int(label) for label in labels if label >= num_classes and label != ignore_index]
        if labels:
            outside.append(f'{seg_map} ({_examples(labels)})')
    if outside:
        reduced = ' after reduce_zero_label (stored value - 1, 0 ignored)' if reduce_zero_label else ''
        raise DataCheckError(f'{len(outside)} segmentation maps of {map_dir} have labels outside the model\'s '
                             f'{num_classes} classes (0..{num_classes - 1}) and the ignore index {ignore_index}'
                             f'{reduced}: {_examples(outside)}. Set the model\'s num_classes, or fix the maps.')
    return []


def _num_classes(cfg: Config) -> Optional[int]:
    head = (cfg.get('model') or {}).get('decode_head')
    head = head[-1] if isinstance(head, (list, tuple)) else head
    return head.get('num_classes') if isinstance(head, dict) else None


def check_datasets(cfg: Config, loaders) -> None:
    """Stops before any dataset class runs where the loaders' data is missing, cut short or would be used
    wrongly (see the module docstring); prints what mmdet would drop from it.

    Raises:
        DatasetNotFoundError: A data path or evaluator annotation file that does not exist, or a JSON
            annotation file cut short.
        DataCheckError: See :func:`check_coco` and :func:`check_segmentation`.
    """
    for dataset in iter_datasets(cfg, loaders):
        for path in dataset_paths(dataset):
            if osp.exists(path):
                continue
            dataset_type = str(dataset.get('type', 'the dataset')).split('.')[-1]
            layout = EXPECTED_LAYOUTS.get(dataset_type, 'the layout its dataset class documents')
            raise DatasetNotFoundError(
                f'{dataset_type} data not found: {path} does not exist.\n'
                f'  Expected: {layout}.\n'
                f'  Put the data there (a symlink works), or point the config elsewhere with\n'
                f'  --cfg-options data_root=/path/to/your/copy/')
    for path in _annotation_files(cfg, loaders):
        if not osp.isfile(path):
            raise DatasetNotFoundError(f'annotation file {path} does not exist (the evaluator reads it). Put it '
                                       f'there, or point the config elsewhere with --cfg-options data_root=...')
        check_json_complete(path)
    checked = set()
    scope = cfg.get('default_scope', 'mmengine')
    for loader, dataset in _datasets_of(cfg, loaders):
        dataset_type = _dataset_type(dataset, scope)
        key = (loader == 'train_dataloader', json.dumps(dataset, sort_keys=True, default=str))
        if key in checked:
            continue
        checked.add(key)
        prefix = dataset.get('data_prefix') or {}
        if isinstance(prefix, dict) and 'seg_map_path' in prefix:
            notes = check_segmentation(dataset, dataset_type, _num_classes(cfg))
        elif str(dataset.get('ann_file', '')).endswith('.json') and isinstance(prefix, dict) and 'img' in prefix:
            evaluator = cfg.get(loader.replace('dataloader', 'evaluator')) or {}
            formats_only = isinstance(evaluator, dict) and evaluator.get('format_only')  # e.g. COCO test-dev
            notes = check_coco(dataset, dataset_type, evaluation=loader != 'train_dataloader' and not formats_only,
                               training=loader == 'train_dataloader')
        else:
            notes = []
        for note in notes:
            print(f'data check ({loader.replace("_dataloader", "")} set): {note}')
