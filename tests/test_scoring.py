"""The one scoring path: what is evaluated is what is served."""
import numpy as np
import torch

from nostrade.registry import load_checkpoint
from nostrade.dataset import load_dataset
from nostrade.evaluate import history_mask
from nostrade.scoring import PATH_SEQUENCE, Scoring
from nostrade.sequences import DISLIKE, LIKE, LOVE, Sequences
from predict import Recommender


def test_the_evaluation_scorer_is_the_served_score(processed_sample, tiny_checkpoint):
    """Scoring.scorer (evaluation, the ablation's served rows) ranks exactly what predict.Recommender serves,
    dislike rules and cold-start paths included."""
    data = load_dataset(processed_sample)
    model = load_checkpoint(tiny_checkpoint).model
    rec = Recommender(model, data)
    history = data.sequences.take(np.arange(6)).last(10)
    now = np.full(len(history.iid), data.n_time_bins)  # events without a timestamp are served as "now"
    history = Sequences(history.offsets, history.iid, np.resize([DISLIKE, LIKE, LOVE], len(history.iid)), now)
    history = Sequences.from_lists(  # one history of a single event: the model scores it too
        [*np.split(history.iid, history.offsets[1:-1]), history.iid[:1]],
        [*np.split(history.feedback, history.offsets[1:-1]), [LOVE]],
        [*np.split(history.time_bin, history.offsets[1:-1]), [data.n_time_bins]])
    item_id = data.items["item_id"].to_numpy()
    events = [[(int(item_id[i - 1]), int(f)) for i, f in zip(h.iid, h.feedback)]
              for h in (history.take([u]) for u in range(history.n_users))]
    served = rec.scores(events, alpha=0.3)
    assert served.paths[-1] == PATH_SEQUENCE == served.paths[0] and served.penalty.any()
    evaluated = Scoring.over(model, data.items, data.n_items).scorer(0.3)(history)
    unseen = ~history_mask(history, data.n_items)[:, 1:]
    torch.testing.assert_close(evaluated[:, 1:][unseen], torch.from_numpy(served.final[:, :data.n_items])[unseen])


def test_any_model_plugs_in_and_a_dislike_only_lowers_its_part():
    """A model with score() (here a fixed table) gets the blend and the dislike rules; with a dislike, the model
    part is the lower of the readings with and without it."""
    class Table:
        def score(self, history):
            liked = torch.tensor([(history.take([u]).feedback != DISLIKE).all() for u in range(history.n_users)])
            base = torch.tensor([0.0, 0.0, 0.0, 3.0, 2.0, 1.0])
            return base + torch.where(liked, 0.0, 1.0)[:, None] * torch.tensor([0.0, 0, 0, -3.0, 0, 3.0])

        def item_vectors(self):
            return np.eye(6, dtype=np.float32)

    scoring = Scoring(Table(), 5, Table().item_vectors(), np.eye(5, dtype=np.float32), np.zeros(5), dislike_weight=0.0)
    s = scoring.scores(scoring.histories_of(Sequences.from_lists([[1, 2], [1, 2]], [[LIKE, LIKE], [LIKE, DISLIKE]])), 0.0)
    np.testing.assert_allclose(s.model[0, 2:], [1.0, 0.5, 0.0])  # likes only: 3, 2, 1 over titles 3, 4, 5
    np.testing.assert_allclose(s.model[1, 2:], [0.0, 0.5, 0.0])  # with the dislike 0, 2, 4 -> 0, .5, 1: min with 1, .5, 0
