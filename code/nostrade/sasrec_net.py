"""SASRec with item + feedback + time embeddings (Kang & McAuley 2018, with the "3D" context inputs).

Input at step t: E_item[i_t] + E_feedback[f_t] + E_time[tau_t] + E_pos[t], a causal pre-norm Transformer
encoder, and scores h_t . E_item[i] over the whole catalogue (the item embedding is tied). Sequences are
left-padded (iid 0 = padding), so the most recent event always sits at the last position.

Data whose order is not time (meta.json's ``order_is_time`` false) gets a set model: no position embedding,
training on a fresh permutation of every history each epoch (nostrade.sasrec_training), and scoring that averages the
last hidden state over ``permutations`` orderings that depend only on the history's set of events
(``canonical_orderings``), so the same set scores the same whatever order it was given in. Fields left None
take these defaults from the data (``for_order``); a config built without data is the time-order model.

``use_item_features``: every catalogue title gets a vector, also those the model has no id embedding for (never in the
training data, or outside the vocabulary: ``title_vectors``), from its side features (nostrade.item_features: the
mean of its genres' embeddings, one embedding per coded field: type, episode-count, members, mean-rating and year
buckets, and a linear map of the standardised numeric values). Two ways (``features_as``):
- ``"fallback"`` (the default): a title's vector is its id embedding where it has one, else its feature part. The
  model is first trained as without features, then frozen while the feature part learns to stand in for id
  embeddings (nostrade.sasrec_training.fit_feature_part; as Meta-Embedding, Pan et al. 2019, learns the first embeddings of new
  ads): each step a share ``id_dropout`` of the titles is scored by its feature part instead, under the same loss.
  Titles with an id score exactly as in the model without features; the others compete with them on the same scale,
  plus ``feature_shift``: a constant added to the score of every title scored from its features alone, chosen on the
  validation events (nostrade.sasrec_training.fit_feature_shift: the best NDCG@10 there, down to a floor that keeps such
  titles in some lists).
- ``"sum"``: a title's vector is its id embedding plus its feature part, trained together; ``id_dropout`` drops the
  id part of a share of the titles each time the table is built, so that the feature part also learns to stand
  alone, and ``id_weight`` multiplies the id part outside training. With that id dropout it costs titles with an
  id accuracy (the ablation rows sasrec+features-sum*), so it is kept as the measured alternative.
Off (the default), the model, its weights and its config are as before.

``feedback_head``: beside the next-item scores, a head predicts how the person will feel about a title:
``like_logit(h, i) = (W h) · e_i + b_i`` estimates log-odds of P(Like or Love | history, next = i), trained on every
position's actual feedback (nostrade.sasrec_training, a binary cross-entropy term). Scores are then
``h · e_i + like_weight · log σ(like_logit(h, i))``: the next-item logit (log P(next = i) up to a constant per
history) plus the log-probability that the person will like it, ``like_weight`` chosen on the validation events
(nostrade.sasrec_training.fit_like_weight), so a title the person would watch but dislike sinks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from nostrade.item_features import FeatureEncoding
from nostrade.sequences import Sequences, sum_by_owner

N_FEEDBACK = 4  # 0 padding, 1 Dislike, 2 Like, 3 Love
ORDERINGS = 1  # canonical orderings averaged when scoring a set model: 1, 2, 4 and 8 served the same validation
               # NDCG@10 on the anime sample (artifacts/bench/sasrec-orderings.json), each one more row of forward pass
# left out of config() when features are off, so such a config is as before
FEATURE_FIELDS = ("use_item_features", "features_as", "id_dropout", "id_weight", "item_features", "feature_shift")
FEATURES_AS = ("fallback", "sum")
FEATURE_MODULES = ("genre_emb", "field_emb", "numeric_proj")  # what fit_feature_part trains
FEATURE_BUFFERS = ("genre_index", "field_codes", "numeric", "has_id")
HEAD_FIELDS = ("feedback_head", "like_weight")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread uint64 hash of each uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def canonical_orderings(history: Sequences, n: int) -> Sequences:
    """Each history ``n`` times (row u * n + p), in orderings that depend only on its set of (item, feedback)
    events, never on the order it came in: an event's key hashes the event, the whole set and p."""
    copies = history if n == 1 else history.take(np.repeat(np.arange(history.n_users), n))
    rows = copies.row_of_event()
    event = _mix(copies.iid.astype(np.uint64) * np.uint64(N_FEEDBACK) + copies.feedback.astype(np.uint64))
    set_key = sum_by_owner(event[:, None], rows, copies.n_users)[:, 0]  # a (wrapping) sum: the same in any order
    key = _mix(event ^ set_key[rows] ^ _mix((rows % n).astype(np.uint64) + np.uint64(1)))
    return copies.events(np.lexsort((key, rows)), copies.offsets)


@dataclass
class SASRecConfig:
    n_items: int
    n_time_bins: int = 1
    max_len: int = 200
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    dropout: float = 0.2
    attention_dropout: float = 0.0  # > 0 rules out the fused attention kernels: ~5x slower attention on CPU
    use_feedback: bool = True
    use_time: bool = True
    use_position: bool | None = None  # None: from the data's order (on where it is time)
    permutations: int | None = None  # scoring: average over this many canonical orderings (0: the order given)
    use_item_features: bool = False  # every title gets a vector from its side features (see the module docstring)
    features_as: str = "fallback"  # "fallback": the id embedding, else the feature part; "sum": id + feature part
    id_dropout: float = 0.5  # training: share of titles scored by their feature part alone each time the table is built
    id_weight: float = 1.0  # "sum", scoring: the id part's weight
    item_features: dict | None = None  # the FeatureEncoding (from the data: nostrade.sasrec_training fills it)
    feature_shift: float = 0.0  # added to the scores of titles scored from features alone (fitted on validation)
    feedback_head: bool = True  # predict P(Like or Love | history, next title) too (see the module docstring)
    like_weight: float = 0.0  # scoring: the weight of log P(like) beside the next-item logit (fitted on validation)

    def for_order(self, order_is_time: bool) -> "SASRecConfig":
        """The None fields filled for data whose order is (or is not) time."""
        return dataclasses.replace(
            self, use_position=order_is_time if self.use_position is None else self.use_position,
            permutations=(0 if order_is_time else ORDERINGS) if self.permutations is None else self.permutations)


def trim_left_padding(iid: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the leading columns that are padding in every row (attention costs O(L^2); outputs are unchanged)."""
    real = (iid > 0).any(0)
    first = int(real.int().argmax()) if bool(real.any()) else iid.shape[1] - 1
    return tuple(t[:, first:] for t in (iid, *others))


class Block(nn.Module):
    """Pre-norm Transformer layer: x + Attention(LN(x)), then x + FFN(LN(x)) (as nanoGPT, GPT-2)."""

    def __init__(self, d: int, n_heads: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.n_heads, self.attention_dropout = n_heads, attention_dropout
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x (B, L, d); allowed (B, 1, L, L) boolean, True where query may attend to key.
        ``last_only``: only the last position's output (B, 1, d), for scoring: its queries alone are computed.
        The submodules' functions are called directly: on one request's tiny tensors, going through each module's
        __call__ costs a sixth of the pass (the same operations, the same bits)."""
        b, length, d = x.shape
        h = F.layer_norm(x, (d,), self.norm1.weight, self.norm1.bias, self.norm1.eps)
        q, k, v = F.linear(h, self.qkv.weight, self.qkv.bias).view(b, length, 3, self.n_heads, d // self.n_heads
                                                                    ).permute(2, 0, 3, 1, 4)
        if last_only:
            x, q, allowed = x[:, -1:], q[:, :, -1:], allowed[:, :, -1:]
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                             dropout_p=self.attention_dropout if self.training else 0.0)
        x = x + self._dropout(F.linear(att.transpose(1, 2).reshape(b, x.shape[1], d), self.out.weight, self.out.bias))
        h = F.layer_norm(x, (d,), self.norm2.weight, self.norm2.bias, self.norm2.eps)
        up, _, down = self.ffn
        return x + self._dropout(F.linear(F.gelu(F.linear(h, up.weight, up.bias)), down.weight, down.bias))

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout.p, training=True) if self.training else x


class SASRec(nn.Module):
    kind = "sasrec"

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg = cfg.for_order(True)
        d = cfg.d_model
        self.item_emb = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)
        self.feedback_emb = nn.Embedding(N_FEEDBACK, d, padding_idx=0) if cfg.use_feedback else None
        self.time_emb = nn.Embedding(cfg.n_time_bins + 1, d, padding_idx=0) if cfg.use_time else None
        self.pos_emb = nn.Embedding(cfg.max_len, d) if cfg.use_position else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(d, cfg.n_heads, cfg.dropout, cfg.attention_dropout)
                                    for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(d)
        for emb in (self.item_emb, self.feedback_emb, self.time_emb, self.pos_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)
                if emb.padding_idx is not None:
                    emb.weight.data[emb.padding_idx].zero_()
        if cfg.use_item_features:  # built last: the other weights draw the same initial values as without
            self._init_features(cfg)
        if cfg.feedback_head:  # after the features, for the same reason
            self.like_proj = nn.Linear(d, d, bias=False)
            self.like_bias = nn.Embedding(cfg.n_items + 1, 1)
            nn.init.normal_(self.like_proj.weight, std=0.02)
            nn.init.zeros_(self.like_bias.weight)

    def _init_features(self, cfg: SASRecConfig) -> None:
        if cfg.item_features is None:
            raise ValueError("use_item_features: the config has no item_features encoding (nostrade.sasrec_training fills it "
                             "from the data)")
        if cfg.features_as not in FEATURES_AS:
            raise ValueError(f"features_as: {cfg.features_as!r} is not one of {', '.join(FEATURES_AS)}")
        self.encoding = FeatureEncoding.from_dict(cfg.item_features)
        sizes = self.encoding.field_sizes
        self.genre_emb = nn.EmbeddingBag(len(self.encoding.genres) + 1, cfg.d_model, mode="mean", padding_idx=0)
        self.field_emb = nn.Embedding(max(sum(sizes), 1), cfg.d_model)
        n_numeric = len(self.encoding.scale)
        self.numeric_proj = nn.Linear(n_numeric, cfg.d_model, bias=False) if n_numeric else None
        for emb in (self.genre_emb, self.field_emb):
            nn.init.normal_(emb.weight, std=0.02)
        self.genre_emb.weight.data[0].zero_()
        self.register_buffer("field_offsets", torch.tensor(np.cumsum([0, *sizes[:-1]]), dtype=torch.long)[:len(sizes)],
                             persistent=False)
        self.register_buffer("genre_index", torch.zeros(cfg.n_items + 1, self.encoding.max_genres, dtype=torch.long))
        self.register_buffer("field_codes", torch.zeros(cfg.n_items + 1, len(sizes), dtype=torch.long))
        self.register_buffer("numeric", torch.zeros(cfg.n_items + 1, len(self.encoding.scale)))
        self.register_buffer("has_id", torch.zeros(cfg.n_items + 1, dtype=torch.bool))

    def set_titles(self, items: pd.DataFrame, has_id: np.ndarray) -> None:
        """The vocabulary's feature codes (``items``: one row per iid 1..n_items, in iid order) and which titles
        have an id part (``has_id``: (n_items + 1,) bool, e.g. the iids that occur in the training data)."""
        genre_index, codes, numeric = self.encoding.encode(items)
        self.genre_index[1:] = torch.from_numpy(genre_index)
        self.field_codes[1:] = torch.from_numpy(codes)
        self.numeric[1:] = torch.from_numpy(numeric)
        self.has_id.copy_(torch.from_numpy(np.asarray(has_id, dtype=bool)))
        self.has_id[0] = False

    def feature_part(self, genre_index: torch.Tensor, field_codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """(n, d) feature vectors of titles from their codes and values (nostrade.item_features)."""
        part = self.genre_emb(genre_index) + self.field_emb(field_codes + self.field_offsets).sum(1)
        return part if self.numeric_proj is None else part + self.numeric_proj(numeric)

    def item_table(self, id_weight: float | None = None) -> torch.Tensor:
        """(n_items + 1, d) the item vectors, input and output (row 0, padding, zero); ``id_weight``: outside training,
        instead of the config's ("sum")."""
        if not self.cfg.use_item_features:
            return self.item_emb.weight
        keep = self.has_id
        if self.training and self.cfg.id_dropout > 0:
            keep = keep & (torch.rand(len(keep), device=keep.device) >= self.cfg.id_dropout)
        features = self.feature_part(self.genre_index, self.field_codes, self.numeric)
        if self.cfg.features_as == "fallback":
            table = torch.where(keep.unsqueeze(1), self.item_emb.weight, features)
        else:
            weight = keep.float() * (1.0 if self.training else self.cfg.id_weight if id_weight is None else id_weight)
            table = self.item_emb.weight * weight.unsqueeze(1) + features
        return torch.cat([torch.zeros_like(table[:1]), table[1:]])

    @property
    def scores_titles(self) -> bool:
        """Whether it scores titles outside its vocabulary (``title_vectors``): nostrade.scoring asks."""
        return self.cfg.use_item_features

    def from_features_alone(self, n_columns: int) -> torch.Tensor:
        """(n_columns,) bool, of ``score``'s columns: True where the title is scored from its features alone (no id
        part, or one of the more titles after the vocabulary), those that ``feature_shift`` shifts."""
        alone = torch.cat([~self.has_id.cpu(), torch.ones(n_columns - len(self.has_id), dtype=torch.bool)])
        alone[0] = False  # padding
        return alone

    def title_vectors(self, items: pd.DataFrame) -> torch.Tensor:
        """(len(items), d) float32 vectors of any titles (a catalogue frame's rows) from their features alone: how a
        title without an id part is scored."""
        if not self.cfg.use_item_features:
            raise ValueError("title_vectors: this model was trained without item features (use_item_features)")
        encoded = (torch.from_numpy(a).to(self.has_id.device) for a in self.encoding.encode(items))
        with torch.no_grad():
            return self.feature_part(*encoded).float().cpu()

    def served_table(self, more_titles: pd.DataFrame) -> torch.Tensor:
        """(n_items + 1 + len(more_titles), d): the item table with more titles' vectors after it, built once for a
        caller that scores many histories against them (``score(..., table=...)``, nostrade.scoring)."""
        with torch.no_grad():
            table = self.eval().item_table().float().cpu()
        return torch.cat([table, self.title_vectors(more_titles)])

    @classmethod
    def from_state(cls, config: dict, state: dict) -> "SASRec":
        if config.get("use_item_features") and "features_as" not in config:  # saved before "fallback" existed
            config = {**config, "features_as": "sum"}
        if "feedback_head" not in config:  # saved before the head existed
            config = {**config, "feedback_head": False}
        model = cls(SASRecConfig(**config))
        model.load_state_dict(state)
        return model.eval()

    def config(self) -> dict:
        config = dataclasses.asdict(self.cfg)
        return config if self.cfg.use_item_features else {k: v for k, v in config.items() if k not in FEATURE_FIELDS}

    @property
    def window(self) -> int | None:
        """The most recent events a served history keeps: max_len; a set model reads them all (canonical orderings)."""
        return None if self.cfg.permutations else self.cfg.max_len

    @staticmethod
    def attention_mask(iid: torch.Tensor) -> torch.Tensor:
        """(B, 1, L, L) boolean, True where a query may attend to a key: earlier or same real positions.

        A padding query would then see no key at all (softmax of nothing is NaN), so every position may
        always attend to itself; padding outputs are never scored.
        """
        length = iid.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=iid.device).tril()
        # (causal & real key) | self == causal & (real key | self): the diagonal is causal
        allowed = causal & ((iid > 0).unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=iid.device))
        return allowed.unsqueeze(1)

    def forward(self, iid: torch.Tensor, feedback: torch.Tensor, time_bin: torch.Tensor,
                last_only: bool = False, table: torch.Tensor | None = None) -> torch.Tensor:
        """Left-padded (B, L) int64 inputs, L <= max_len -> hidden states (B, L, d_model), or (B, 1, d_model)
        of the last position alone with ``last_only`` (the last layer then skips every other position).
        ``table``: the item table when the caller has built it already (``item_table``)."""
        length = iid.shape[1]
        if self.cfg.use_item_features:
            x = F.embedding(iid, self.item_table() if table is None else table) * self.cfg.d_model ** 0.5
        else:
            x = self.item_emb(iid) * self.cfg.d_model ** 0.5
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(self.cfg.max_len - length, self.cfg.max_len, device=iid.device))
        if self.feedback_emb is not None:
            x = x + self.feedback_emb(feedback)
        if self.time_emb is not None:
            x = x + self.time_emb(time_bin.clamp(max=self.cfg.n_time_bins))
        if self.training:
            x = self.dropout(x)
        allowed = self.attention_mask(iid)
        for n, block in enumerate(self.blocks):
            x = block(x, allowed, last_only=last_only and n == len(self.blocks) - 1)
        return self.final_norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every item (column 0, padding, included) for each hidden state (..., d) -> (..., n_items + 1)."""
        return hidden @ self.item_table().T

    def like_logits(self, hidden: torch.Tensor, table: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """The feedback head's log-odds that the person likes a title: of every title of ``table`` (..., rows of
        table; titles after the vocabulary get no bias), or of ``items`` (one iid per hidden state: (n,))."""
        projected = self.like_proj(hidden)
        if items is not None:
            return (projected * table[items]).sum(-1) + self.like_bias(items).squeeze(-1)
        bias = self.like_bias.weight.squeeze(1)
        bias = torch.cat([bias, bias.new_zeros(len(table) - len(bias))])
        return projected @ table.T + bias

    def last_hidden(self, iid: torch.Tensor, feedback: torch.Tensor, time_bin: torch.Tensor,
                    table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d_model) hidden state after the last position of left-padded inputs (what scores the next item).
        Columns of padding in every row cost time, not results: ``score_parts`` cuts them per batch."""
        return self.forward(iid, feedback, time_bin, last_only=True, table=table)[:, -1]

    def item_vectors(self) -> np.ndarray:
        """(n_items + 1, d) float32: the item table, the space in which titles are alike (row 0 = padding)."""
        return self.item_table().detach().float().cpu().numpy()

    def _last_hidden_of(self, history: Sequences, table: torch.Tensor) -> torch.Tensor:
        """``last_hidden`` of a batch of histories, left-padded to the batch's longest (at most max_len)."""
        width = int(min(self.cfg.max_len, max(history.lengths.max(initial=0), 1)))
        device = self.item_emb.weight.device
        return self.last_hidden(*(torch.from_numpy(a).to(device) for a in history.padded(width)), table=table)

    @torch.inference_mode()
    def score(self, history: Sequences, batch_size: int = 128, table: torch.Tensor | None = None) -> torch.Tensor:
        """A Scorer (see nostrade.evaluate): Sequences -> (n, n_items + 1) scores of the next item, on the CPU:
        ``score_parts``' next-item scores plus ``like_weight`` times its log P(like)."""
        scores, log_like = self.score_parts(history, batch_size, table, with_like=bool(self.cfg.like_weight))
        return scores if log_like is None else scores + self.cfg.like_weight * log_like

    @torch.inference_mode()
    def score_parts(self, history: Sequences, batch_size: int = 128, table: torch.Tensor | None = None,
                    with_like: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(n, n_items + 1) next-item scores (with ``feature_shift``) and the feedback head's log P(like) of every
        title (None without the head or ``with_like``), from one forward pass.
        Events outside the vocabulary (padding 0, ids above n_items) are left out, as the baselines do; a set
        model (``permutations`` > 0) averages the last hidden state over that many canonical orderings.
        ``table``: ``served_table``'s, read instead of building the item table, and its m more titles scored in m
        more columns after the vocabulary."""
        was_training, device = self.training, self.item_emb.weight.device
        if was_training:  # (a no-op train/eval switch still walks every module: ~50 µs a call)
            self.eval()
        table = self.item_table() if table is None else table.to(device)
        known = (history.iid >= 1) & (history.iid <= self.cfg.n_items)
        if not known.all():
            history = history.select(known)
        copies = max(self.cfg.permutations, 1)
        if self.cfg.permutations:
            history = canonical_orderings(history, copies)
        step = batch_size * copies
        if history.n_users <= step:  # one batch (a request): no reordering
            hidden = self._last_hidden_of(history, table).float().cpu()
        else:  # batches of similar length: less padding
            by_length = torch.from_numpy(np.argsort(history.lengths, kind="stable"))
            hidden = torch.zeros(history.n_users, self.cfg.d_model)
            for i in range(0, history.n_users, step):
                rows = by_length[i:i + step]
                hidden[rows] = self._last_hidden_of(history.take(rows.numpy()), table).float().cpu()
        if copies > 1:
            hidden = hidden.view(-1, copies, self.cfg.d_model).mean(1)
        if was_training:
            self.train()
        table = table.detach().float().cpu()
        scores = hidden @ table.T
        if self.cfg.feature_shift:
            scores += self.cfg.feature_shift * self.from_features_alone(scores.shape[1])
        log_like = None
        if self.cfg.feedback_head and with_like:
            log_like = F.logsigmoid(self.like_logits(hidden.to(device), table.to(device)).cpu())
        return scores, log_like
