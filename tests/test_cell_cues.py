"""The own-cell colour share of tools/ablate.py, against hand counts."""
import mmcv
import numpy as np
import pytest

from mmlavit.cli.cell_cues import own_cell_colour_share
from mmlavit.cli.demo_data import make_coco_occluded_shapes, make_coco_shapes


def tokens_to_image(colours: np.ndarray, patch: int = 4) -> np.ndarray:
    """An image whose patch x patch tokens have the given flat colours, (h, w, 3) -> (h*patch, w*patch, 3)."""
    return colours.repeat(patch, axis=0).repeat(patch, axis=1)


def test_a_token_nearest_to_another_cell_is_not_counted():
    # 4x4 tokens on 2x2 cells of 2x2 tokens. Cell (0, 0): three red tokens and one blue, mean
    # (191.25, 0, 63.75); the other cells are flat green, blue and grey. The blue token there is
    # nearest to the blue cell (distance 0), every other token to its own cell: 15 of 16.
    red, green, blue, grey = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)
    colours = np.empty((4, 4, 3), np.float32)
    colours[:2, :2], colours[:2, 2:], colours[2:, :2], colours[2:, 2:] = red, green, blue, grey
    colours[1, 1] = blue
    assert own_cell_colour_share(tokens_to_image(colours), pool_size=2) == pytest.approx(15 / 16)


def test_cells_of_their_own_colour_give_one_and_alike_cells_one_in_p_squared():
    rng = np.random.default_rng(0)
    # 7x7 tokens on 7x7 cells: each token is its own cell.
    assert own_cell_colour_share(tokens_to_image(rng.uniform(0, 255, (7, 7, 3))), pool_size=7) == 1.0
    # A checkerboard of one-token squares on 2x2 cells of 4x4 tokens: every cell's mean is the same grey,
    # the tie goes to cell 0, which holds 16 of the 64 tokens.
    board = (np.indices((8, 8)).sum(0) % 2)[..., None] * np.full(3, 255.)
    assert own_cell_colour_share(tokens_to_image(board), pool_size=2) == pytest.approx(1 / 4)


def test_overlapping_windows_hold_their_shared_tokens():
    # 3x3 tokens on 2x2 cells: the windows of each axis are [0, 2) and [1, 3) (adaptive pooling), so the
    # middle row and column belong to two cells. Red grows with the column and green with the row, over
    # 0, 100, 300: the windows' means are 50 and 200, so 0 and 100 are nearest the first window (100 being
    # in both) and 300 the second: every token's nearest cell holds it.
    steps = np.array([0., 100., 300.])
    colours = np.zeros((3, 3, 3))
    colours[..., 0], colours[..., 1] = steps[None, :], steps[:, None]
    assert own_cell_colour_share(tokens_to_image(colours), pool_size=2) == 1.0
    # Without the green rows, the rows' cells tie, the first row's cells win, and the last row of tokens,
    # which only the second row of cells holds, is counted out: 6 of 9.
    colours[..., 1] = 0
    assert own_cell_colour_share(tokens_to_image(colours), pool_size=2) == pytest.approx(6 / 9)


def test_the_ablation_sets_differ_in_their_colour_cue(tmp_path):
    shapes_dir, occluded_dir = tmp_path / 'shapes', tmp_path / 'occluded'
    make_coco_shapes(str(shapes_dir), num_train=1, num_val=8, size=160)
    make_coco_occluded_shapes(str(occluded_dir), num_train=1, num_val=8, size=160)
    shares = [np.mean([own_cell_colour_share(mmcv.imread(str(path))) for path in sorted(root.glob('val2017/*.jpg'))])
              for root in (shapes_dir, occluded_dir)]
    # Smooth colour gradients tell the cells apart; textures repeating between two colours barely do.
    assert shares[0] > 0.3 and shares[1] < 0.15
