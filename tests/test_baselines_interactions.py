import numpy as np

from nostrade.baselines.interactions import interaction_matrix
from nostrade.sequences import Sequences


def test_interaction_matrix_is_binary_drops_unknown_ids_and_keeps_empty_rows():
    seqs = Sequences.from_lists([[3, 1, 3, 9], [], [0, 2]])  # 3 twice, 9 above n_items, 0 padding
    matrix = interaction_matrix(seqs, n_items=4)
    assert matrix.shape == (3, 5) and matrix.dtype == np.float32 and matrix.has_canonical_format
    np.testing.assert_array_equal(matrix.toarray(), [[0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0]])
