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
"""
from __future__ import annotations

import torch


def normalise(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Min-max normalise each row of (batch, n) ``scores`` to [0, 1] over the entries where ``mask`` is True.

    Entries outside ``mask`` get the same affine map (so they may fall outside [0, 1]); NaN entries
    are ignored for the min and max and come out as 0. A row whose valid entries are all equal
    (or that has none) comes out as all 0.
    """
    scores = scores.float()
    valid = ~torch.isnan(scores)
    if mask is not None:
        valid &= mask
    low = torch.where(valid, scores, torch.inf).amin(dim=-1, keepdim=True)
    high = torch.where(valid, scores, -torch.inf).amax(dim=-1, keepdim=True)
    spread = high - low  # -inf when a row has no valid entry
    scale = torch.where(spread > 0, 1.0 / spread, 0.0)
    # scale 0 (constant or empty row) sends every entry to 0; NaN entries (and inf - inf) end up 0 too
    return ((scores - low) * scale).nan_to_num_(0.0, posinf=0.0, neginf=0.0)


def mix(model_norm: torch.Tensor, genre_norm: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha)·model_norm + alpha·genre_norm, for scores already normalised (see ``normalise``)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: {alpha!r} is not in [0, 1]")
    return torch.lerp(model_norm, genre_norm, float(alpha))


def blend(model_scores: torch.Tensor, genre_scores: torch.Tensor, alpha: float,
          mask: torch.Tensor | None = None) -> torch.Tensor:
    """(1 - alpha)·normalise(model_scores) + alpha·normalise(genre_scores), both normalised over ``mask``."""
    return mix(normalise(model_scores, mask), normalise(genre_scores, mask), alpha)
