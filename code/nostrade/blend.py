"""Put model scores and genre cosines on one scale, then mix them: final = (1 - α)·model + α·genre.

A SASRec logit (unbounded, its spread depends on the model) and a genre cosine (in [-1, 1], mostly
ties) are not comparable, so each is min-max normalised to [0, 1] per row, over the row's candidate
items only (the items that can be recommended: unseen ones), before the weighted sum. Min-max rather
than a z-score: both parts then share the same bounded range, so α reads as "the share of the final
score that comes from genres", and a part that is constant over the candidates contributes 0 instead
of dividing by a zero spread.

A NaN score means "this part has no opinion about this item" (e.g. a catalogue title outside the
model's vocabulary): it is left out of the min and max and normalised to 0, the worst value, so such
an item can only rise through the other part.

NumPy float32 arrays: serving scores one person at a time, where NumPy's per-call overhead is a
fraction of PyTorch's (the catalogue-wide passes of a request are ~10 µs each).
"""
from __future__ import annotations

import numpy as np

def normalise(scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Min-max normalise each row of (batch, n) ``scores`` to [0, 1] over the entries where ``mask`` is True.

    Entries outside ``mask`` get the same affine map (so they may fall outside [0, 1]); NaN entries
    are ignored for the min and max and come out as 0. A row whose valid entries are all equal
    (or that has none) comes out as all 0. Returns a new float32 array.
    """
    scores = np.asarray(scores, dtype=np.float32)
    valid = scores if mask is None else np.where(mask, scores, np.float32(np.nan))
    low = np.fmin.reduce(valid, axis=-1, keepdims=True)  # fmin/fmax skip NaN; NaN only for a row with none valid
    spread = np.fmax.reduce(valid, axis=-1, keepdims=True) - low
    scale = np.divide(1.0, spread, out=np.zeros_like(spread), where=spread > 0)
    # scale 0 (constant or empty row, or an infinite spread) sends every entry to 0, whatever low is; the
    # non-finite entries (NaN, inf - inf) end up 0 too
    low[~np.isfinite(low)] = 0.0
    out = np.subtract(scores, low, dtype=np.float32)
    out *= scale
    np.copyto(out, np.float32(0.0), where=~np.isfinite(out))
    return out


def mix(model_norm: np.ndarray, genre_norm: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha)·model_norm + alpha·genre_norm, for scores already normalised (see ``normalise``)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: {alpha!r} is not in [0, 1]")
    out = np.multiply(model_norm, np.float32(1.0 - alpha), dtype=np.float32)
    out += np.float32(alpha) * genre_norm
    return out


def blend(model_scores: np.ndarray, genre_scores: np.ndarray, alpha: float,
          mask: np.ndarray | None = None) -> np.ndarray:
    """(1 - alpha)·normalise(model_scores) + alpha·normalise(genre_scores), both normalised over ``mask``."""
    return mix(normalise(model_scores, mask), normalise(genre_scores, mask), alpha)
