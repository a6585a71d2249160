"""Train the served model on a processed folder: the best by validation of EASE, the two-stage ranker and SASRec.

    python -m nostrade.train --data data/processed --out checkpoints/model.pt [--model auto --candidates ...]
    python -m nostrade.train --model ranker [--generators als,itemknn,ease,content,popularity --n-candidates 100]
    torchrun --nproc_per_node 2 -m nostrade.train ...      (data parallel: gloo on CPU, NCCL on GPUs)

``--model auto`` (the default) fits every kind of ``--candidates`` (``auto_candidates``) on the split's training
part, scores each on the validation events through the served function (nostrade.scoring at predict's default α:
what predict, the app and the API serve), keeps the best by NDCG@10 there, and records every candidate's
validation figures and the choice in the checkpoint's metrics and the metrics JSON (``"auto"``). Its ranker has
every generator where the order is time and none that trains a network where it is not (``auto_generators``: on
the anime sample the sequence generators added nothing and cost most of the fit).

EASE is fitted in closed form (seconds; ``--l2``). ``--model ranker`` fits the two-stage ranker
(nostrade.ranker.TwoStage: ``--generators``, each retrieving its ``--n-candidates`` best titles, then LightGBM
lambdarank); its SASRec generator trains with the SASRec and training flags given here (--epochs, --d-model, ...),
and every generator with --seed.

SASRec: one epoch = one window of (at most max_len + 1) consecutive training events per user; position t predicts
event t + 1. Where the data's order is not time (meta.json's ``order_is_time``), every training history is
first put in a fresh seeded random order each epoch (``permute``), and the model has no position embedding
(nostrade.model): it learns which titles go together, not which come next in the file. Early stopping on
validation NDCG@10 (full ranking, nostrade.evaluate). With ``--model sasrec`` the best model goes to --out, the
full training state after every evaluation to <out>.last.pt, so --resume continues a killed run exactly where its
last evaluation left it.

Losses (``--loss``): ``ce``, the softmax over the whole catalogue (the most accurate; its cost grows with the
catalogue); ``sampled``, a softmax over ``--shared-negatives`` titles drawn once per batch (a ``--uniform-share``
uniformly, the rest by popularity), log-Q corrected, for large catalogues (benchmarks/scale.py: the full Kaggle
size); ``bce`` / ``bpr``, ``--n-negatives`` titles per position (ablations).

Exit status: 0 done; 1 an unexpected error (Python's traceback); 2 bad input (the processed folder, flags, a
--resume checkpoint of another vocabulary or config); 5 an unusable --resume checkpoint (damaged, not a
checkpoint); 7 cannot write --out / --metrics (read-only folder, full disk). A failure prints one line
'error: ...' naming the file; --out is replaced atomically, so it holds the previous checkpoint or the new one.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from nostrade import distributed
from nostrade.atomic import WriteError, write_json
from nostrade.baselines.ease import EASE
from nostrade.checkpoint import (MODEL_KINDS, CheckpointError, check_vocabulary, read_checkpoint, readable_config,
                                 save_checkpoint)
from nostrade.dataset import Dataset, load_dataset
from nostrade.evaluate import evaluate, evaluate_all_targets, history_mask, metrics_from_ranks, net_ndcg, target_ranks
from nostrade.item_features import FeatureEncoding
from nostrade.model import FEATURE_BUFFERS, FEATURE_MODULES, SASRec, SASRecConfig, trim_left_padding
from nostrade.ranker import GENERATORS, FittedGenerators, TwoStage
from nostrade.scoring import Scoring, ServedModel
from nostrade.sequences import DISLIKE, LOVE, Sequences
from nostrade.split import EvalCases, LeaveOneOut, permuted, split_of

LOSSES = ("ce", "sampled", "bce", "bpr")
AUTO_KINDS = ("ease", "ranker", "sasrec")  # what --model auto compares (MODEL_KINDS, in tie order)
SEQUENCE_GENERATORS = ("sasrec", "gru4rec")  # the ranker's generators that train a network (most of its fit)
CROPS = ("random", "last")
EpochCallback = Callable[[dict, int], None]  # (the epoch's history record, cfg.epochs)
SHIFT_STEP, HIGHEST_SHIFT = 0.1, 3.0  # fit_feature_shift's candidates, in standard deviations of the scores


@dataclass
class TrainConfig:
    loss: str = "ce"  # "ce": softmax over the whole catalogue; "sampled": over shared_negatives items drawn once
                      # per batch (sampled softmax, log-Q corrected); "bce" / "bpr": n_negatives items per position
    n_negatives: int = 16
    shared_negatives: int = 1024
    uniform_share: float = 0.0  # "sampled": negatives drawn uniformly with this probability, else by popularity
    feedback_weighting: bool = True  # Love counts love_weight, a Dislike next item is pushed away, not a positive
    love_weight: float = 2.0
    dislike_weight: float = 1.0
    head_weight: float = 1.0  # feedback_head: weight of its binary cross-entropy beside the next-item loss
    dislike_margin: float = 0.0  # weight of a pairwise term: a disliked next title below the row's liked ones
    lr: float = 2e-3
    weight_decay: float = 0.1
    epochs: int = 40  # the cosine schedule spans this many epochs
    batch_size: int = 32  # users per optimizer step, summed over all processes
    warmup: int = 50  # optimizer steps of linear warm-up before the cosine decay
    grad_clip: float = 1.0
    patience: int = 8  # evaluations without a better validation NDCG@10 before stopping
    eval_every: int = 1  # epochs between evaluations
    crop: str = "random"  # window of a training sequence longer than max_len + 1: "random" or the "last"
    permute: bool | None = None  # a fresh seeded permutation of every training history each epoch (None: where
                                 # the data's order is not time, so that a file order cannot be learned)
    max_steps: int = 0  # optimizer steps per epoch, 0 = the whole epoch (benchmarks time part of one)
    feature_epochs: int = 3  # use_item_features "fallback": epochs of fitting the feature part to the frozen model
    lowest_feature_shift: float = -3.0  # "fallback": the furthest fit_feature_shift may push titles scored from
                                        # features down, in std of the scores (a floor keeps new titles in some lists)
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available
    num_threads: int = dataclasses.field(default_factory=distributed.default_threads)  # NOSTRADE_THREADS, else all cores
    resume: bool = False  # continue from <out>.last.pt when it exists
    progress: bool = True

    def for_order(self, order_is_time: bool) -> "TrainConfig":
        """``permute`` filled for data whose order is (or is not) time."""
        return self if self.permute is not None else dataclasses.replace(self, permute=not order_is_time)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss: {self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.shared_negatives < 1 or not 0.0 <= self.uniform_share <= 1.0:
            raise ValueError(f"shared_negatives {self.shared_negatives} / uniform_share {self.uniform_share}: need "
                             "at least 1 negative and a share in [0, 1]")
        if self.crop not in CROPS:
            raise ValueError(f"crop: {self.crop!r} is not one of {', '.join(CROPS)}")


@dataclass
class TrainResult:
    model: ServedModel
    history: list[dict]  # one dict per epoch: epoch, loss, seconds, and the validation metrics when evaluated
    best_metrics: dict  # validation metrics of the best epoch (EASE: of the model; no epochs)
    seconds_to_best: float  # wall time from the start of training to the end of the best epoch's evaluation
    best_epoch: int
    epochs_run: int = 0
    seconds_total: float = 0.0
    model_cfg: SASRecConfig | None = None  # the configs as trained: None fields filled from the data's order
    train_cfg: TrainConfig | None = None


def last_checkpoint_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".last" + path.suffix)


def training_windows(train: Sequences, rows: np.ndarray, window: int, random_crop: bool,
                     generator: torch.Generator) -> Sequences:
    """Each row's training events cut to at most ``window`` consecutive ones: a random window, or the last."""
    seqs = train.take(rows)
    spare = np.maximum(seqs.lengths - window, 0)
    if random_crop:
        draw = torch.rand(len(rows), generator=generator, dtype=torch.float64).numpy()
        start = np.floor(draw * (spare + 1)).astype(np.int64)
    else:
        start = spare
    start_of_event = np.repeat(start, seqs.lengths)
    pos = seqs.position_of_event()
    return seqs.select((pos >= start_of_event) & (pos < start_of_event + window))


def batch_tensors(train: Sequences, rows: np.ndarray, window: int, random_crop: bool, generator: torch.Generator,
                  device: torch.device) -> tuple[torch.Tensor, ...]:
    """A batch's left-padded inputs (iid, feedback, time bin: (B, L)), each position's target (the next iid, 0 where
    there is none) and the target's feedback."""
    windows = training_windows(train, rows, window, random_crop, generator)
    iid, feedback, time_bin = (t.to(device) for t in trim_left_padding(*map(torch.from_numpy, windows.padded(window))))
    target = torch.where(iid[:, :-1] > 0, iid[:, 1:], 0)  # no target for the very first event
    return iid[:, :-1], feedback[:, :-1], time_bin[:, :-1], target, feedback[:, 1:]


def length_batches(lengths: np.ndarray, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """Batches of rows of similar length, so that little padding is computed: sort by length times a random
    factor in [0.8, 1.2) (batches differ from epoch to epoch), cut, shuffle the order of the batches."""
    noise = 0.8 + 0.4 * torch.rand(len(lengths), generator=generator, dtype=torch.float64).numpy()
    order = np.argsort(lengths * noise, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def sampling_distribution(train: Sequences, n_items: int, uniform_share: float) -> torch.Tensor:
    """(n_items + 1,) float64 probabilities of drawing each item as a "sampled" negative: uniform with
    probability ``uniform_share``, else in proportion to its training events; padding 0 never."""
    counts = np.bincount(train.iid, minlength=n_items + 1)[:n_items + 1].astype(np.float64)
    counts[0] = 0.0
    uniform = np.r_[0.0, np.full(n_items, 1.0 / n_items)]
    popular = counts / counts.sum() if counts.sum() > 0 else uniform  # no events: uniform
    return torch.from_numpy(uniform_share * uniform + (1.0 - uniform_share) * popular)


def sampled_log_p(table: torch.Tensor, h: torch.Tensor, target: torch.Tensor, n_negatives: int,
                  sampling: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """log p(target) of each position under a sampled softmax: the target against ``n_negatives`` items drawn
    once for the whole batch from ``sampling`` (every position scores the same items: one matrix product).
    Each negative's logit less the log of its expected count in the draw (log-Q correction: the sum of the
    corrected exponentials then estimates the sum over the whole catalogue); a draw of a position's own
    target is masked there; the target's logit is kept as it is."""
    negatives = torch.multinomial(sampling, n_negatives, replacement=True, generator=generator)
    log_expected = (n_negatives * sampling[negatives]).log().float().to(h.device)
    negatives = negatives.to(h.device)
    neg_logits = (h @ table[negatives].T).float() - log_expected
    neg_logits = neg_logits.masked_fill(negatives.unsqueeze(0) == target.unsqueeze(1), -torch.inf)
    pos_logit = (h * table[target]).sum(-1).float()
    return pos_logit - torch.cat([pos_logit.unsqueeze(1), neg_logits], 1).logsumexp(1)


def sequence_loss(model: SASRec, hidden: torch.Tensor, target: torch.Tensor, target_feedback: torch.Tensor,
                  cfg: TrainConfig, generator: torch.Generator, sampling: torch.Tensor | None = None) -> torch.Tensor:
    """Mean loss over the scored positions (target > 0) of a batch of hidden states (B, L, d), every loss against
    the model's output item table (with item features: id part and feature part). ``sampling``: the "sampled"
    loss's distribution of negatives (sampling_distribution); None: uniform."""
    table = model.item_table()
    pairwise = cfg.dislike_margin * below_liked(hidden, target, target_feedback, table) if cfg.dislike_margin else 0.0
    h, target, feedback = hidden[target > 0], target[target > 0], target_feedback[target > 0]
    disliked = (feedback == DISLIKE) if cfg.feedback_weighting else torch.zeros_like(target, dtype=torch.bool)
    weight = torch.ones(len(target), device=h.device)
    if cfg.feedback_weighting:
        weight = torch.where(feedback == LOVE, cfg.love_weight, weight)
        weight = torch.where(disliked, cfg.dislike_weight, weight)

    if cfg.loss in ("ce", "sampled"):
        if cfg.loss == "ce":
            logits = (h @ table.T).float()
            logits[:, 0] = -torch.inf
            log_p = logits.log_softmax(-1).gather(1, target.unsqueeze(1)).squeeze(1)
        else:
            if sampling is None:
                sampling = sampling_distribution(Sequences.from_lists([]), model.cfg.n_items, uniform_share=1.0)
            log_p = sampled_log_p(table, h, target, cfg.shared_negatives, sampling, generator)
        # A disliked next item: -log(1 - p) pushes its probability down instead of up.
        push_away = -torch.log1p(-log_p.clamp(max=-1e-6).exp())
        per_position = torch.where(disliked, push_away, -log_p)
    else:
        negatives = torch.randint(1, model.cfg.n_items + 1, (len(target), cfg.n_negatives), generator=generator)
        negatives = negatives.to(h.device)
        pos_score = (h * table[target]).sum(-1).float()
        neg_score = torch.einsum("nd,nkd->nk", h, table[negatives]).float()
        if cfg.loss == "bce":
            per_position = torch.where(disliked, F.softplus(pos_score), F.softplus(-pos_score))
            per_position = per_position + F.softplus(neg_score).mean(-1)
        else:  # bpr: the next item above each negative; a disliked one below them
            margin = torch.where(disliked.unsqueeze(1), neg_score - pos_score.unsqueeze(1),
                                 pos_score.unsqueeze(1) - neg_score)
            per_position = F.softplus(-margin).mean(-1)
    loss = (weight * per_position).sum() / max(len(target), 1) + pairwise
    if model.cfg.feedback_head:  # how the person felt about each next title: Like/Love (1) or Dislike (0)
        liked = (feedback != DISLIKE).float()
        loss = loss + cfg.head_weight * F.binary_cross_entropy_with_logits(
            model.like_logits(h, table, target).float(), liked)
    return loss


def below_liked(hidden: torch.Tensor, target: torch.Tensor, target_feedback: torch.Tensor,
                table: torch.Tensor) -> torch.Tensor:
    """Mean over the positions whose next title is a Dislike of softplus(score(disliked) - score(liked)), averaged
    over the titles the same row's person liked (their liked next titles): a pairwise push of each disliked
    title below that person's liked ones, from the hidden state that would recommend it. (B, L, d), (B, L) -> ()."""
    real = target > 0
    disliked, liked = real & (target_feedback == DISLIKE), real & (target_feedback != DISLIKE)
    pairs = disliked.unsqueeze(2) & liked.unsqueeze(1)  # (B, L, L): (position with a disliked target, liked target)
    if not pairs.any():
        return hidden.sum() * 0.0
    scores = torch.einsum("bld,bmd->blm", hidden, table[target]).float()  # position l's score of target m
    gaps = F.softplus(scores.diagonal(dim1=1, dim2=2).unsqueeze(2) - scores)
    per_position = (gaps * pairs).sum(2) / pairs.sum(2).clamp(min=1)
    return per_position[pairs.any(2)].mean()


def with_item_features(model_cfg: SASRecConfig, dataset: Dataset) -> SASRecConfig:
    """The config with its feature encoding fitted on the data's items, where it uses features and has none yet."""
    if not model_cfg.use_item_features or model_cfg.item_features is not None:
        return model_cfg
    encoding = FeatureEncoding.fit(dataset.items, dataset.meta.get("source"))
    return dataclasses.replace(model_cfg, item_features=encoding.to_dict())


def titles_in(train: Sequences, n_items: int) -> np.ndarray:
    """(n_items + 1,) bool: the iids that occur in ``train`` (the titles that get an id part)."""
    return np.bincount(train.iid, minlength=n_items + 1)[:n_items + 1] > 0


def fit_feature_part(plain: SASRec, model_cfg: SASRecConfig, dataset: Dataset, split: LeaveOneOut, cfg: TrainConfig,
                     init_state: dict | None = None) -> SASRec:
    """The "fallback" item features (nostrade.model): ``plain`` (trained without features), frozen, with a feature
    part fitted to stand in for its id embeddings. Each step, a share ``id_dropout`` of the titles is scored by its
    feature part instead of its id embedding, under the training loss against the frozen model's hidden states;
    cfg.feature_epochs epochs (no early stopping: a title with an id scores the same whatever the feature part, so few
    validation events could tell), then the scores of the titles without an id are shifted (fit_feature_shift).
    Every process fits the same (seeded by cfg.seed alone), so torchrun needs no communication here.
    ``init_state``: where a feature part starts from (fine-tuning a model that has one), else a fresh draw."""
    device = plain.item_emb.weight.device
    torch.manual_seed(cfg.seed)
    model = SASRec(dataclasses.replace(model_cfg, feature_shift=0.0)).to(device)
    model.load_state_dict({**model.state_dict(), **(init_state or {}), **plain.state_dict()})
    model.set_titles(dataset.items, titles_in(split.train, dataset.n_items))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(FEATURE_MODULES))
    optimizer = make_optimizer(model, cfg)
    sampling = sampling_distribution(split.train, dataset.n_items, cfg.uniform_share) if cfg.loss == "sampled" else None
    rows, window = np.flatnonzero(split.train.lengths >= 2), model_cfg.max_len + 1
    generator = torch.Generator().manual_seed(cfg.seed)
    for epoch in tqdm(range(1, cfg.feature_epochs + 1), desc="feature part", unit="epoch", disable=not cfg.progress):
        seed = int(torch.randint(2 ** 62, (1,), generator=generator))
        train = permuted(split.train, seed) if cfg.permute else split.train
        for batch in length_batches(np.minimum(train.lengths[rows], window), cfg.batch_size, generator):
            iid, feedback, time_bin, target, target_feedback = batch_tensors(
                train, rows[batch], window, cfg.crop == "random", generator, device)
            with torch.no_grad():  # every training title has an id: its input is its id embedding
                hidden = model.eval()(iid, feedback, time_bin, table=model.item_emb.weight)
            loss = sequence_loss(model.train(), hidden, target, target_feedback, cfg, generator, sampling)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.eval()
    shift = fit_feature_shift(model, split.valid, dataset.n_items, cfg.lowest_feature_shift)
    model.cfg = dataclasses.replace(model.cfg, feature_shift=shift)
    return model


def fit_feature_shift(model: SASRec, cases: EvalCases, n_items: int, lowest: float) -> float:
    """The shift (nostrade.model's ``feature_shift``) of the scores of the titles without an id part that gives
    ``model`` (whose own shift is 0) the best NDCG@10 over ``cases`` (the validation events): of the shifts from
    ``lowest`` to HIGHEST_SHIFT in steps of SHIFT_STEP, times the spread (std) of its scores; of equal ones, the
    nearest to 0 (where no case tells them apart, the scores stay as fitted)."""
    shifted = model.from_features_alone(n_items + 1)
    if not shifted.any() or len(cases) == 0:
        return 0.0
    shifts = np.linspace(lowest, HIGHEST_SHIFT, round((HIGHEST_SHIFT - lowest) / SHIFT_STEP) + 1)
    ranks, spread = [], None
    for start in range(0, len(cases), 1024):
        history = cases.history.take(np.arange(start, min(start + 1024, len(cases))))
        scores, exclude = model.score(history), history_mask(history, n_items)
        spread = float(scores[:, 1:].std()) if spread is None else spread
        target = torch.from_numpy(cases.target[start:start + 1024])
        ranks.append(torch.stack([target_ranks(scores + spread * b * shifted, target, exclude) for b in shifts], 1))
    ndcg = np.array([metrics_from_ranks(r.numpy())["ndcg@10"] for r in torch.cat(ranks).T])
    best = np.flatnonzero(ndcg >= ndcg.max() - 1e-12)
    return float(spread * shifts[best[np.argmin(np.abs(shifts[best]))]])


LIKE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # fit_like_weight's candidates


def fit_like_weight(model: SASRec, cases: EvalCases, n_items: int) -> float:
    """The ``like_weight`` (nostrade.model's feedback head) of the best net NDCG@10 over ``cases`` (the validation
    events, each a Like/Love to find or a Dislike to keep out of the top), the smallest of equals."""
    if len(cases) == 0:
        return 0.0
    ranks = {w: [] for w in LIKE_WEIGHTS}
    for start in range(0, len(cases), 1024):
        history = cases.history.take(np.arange(start, min(start + 1024, len(cases))))
        (logits, log_like), exclude = model.score_parts(history), history_mask(history, n_items)
        target = torch.from_numpy(cases.target[start:start + 1024])
        for w in LIKE_WEIGHTS:
            ranks[w].append(target_ranks(logits + w * log_like, target, exclude).numpy())
    liked = cases.target_feedback != DISLIKE
    net = {w: net_ndcg(np.concatenate(r), liked) for w, r in ranks.items()}
    return min(w for w, value in net.items() if value >= max(net.values()) - 1e-12)


def cosine_with_warmup(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def make_optimizer(model: SASRec, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and LayerNorm gains (nanoGPT's rule: decay 2-D tensors only)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Every random draw of an epoch (crop, negatives, dropout) follows from (seed, epoch, rank): resumes are exact."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def train_sasrec(dataset: Dataset, model_cfg: SASRecConfig, train_cfg: TrainConfig,
                 split: LeaveOneOut | None = None, checkpoint_path: str | Path | None = None,
                 init_state: dict | None = None, on_epoch: EpochCallback | None = None) -> TrainResult:
    """``init_state``: model weights to start from instead of a fresh initialisation (nostrade.finetune).
    ``on_epoch(record, epochs)``: called on the main process after each epoch with its history record and
    cfg.epochs (the most epochs the run can have), e.g. for a progress bar. With ``use_item_features``, the
    feature encoding comes from the data's items unless the config has one, and a title has an id part where it
    occurs in the split's training part; "fallback" features train the model without them, then fit_feature_part
    (the returned history and validation metrics are the first stage's)."""
    model_cfg = with_item_features(model_cfg.for_order(dataset.order_is_time), dataset)
    cfg = train_cfg.for_order(dataset.order_is_time)
    split = split if split is not None else split_of(dataset)
    if model_cfg.use_item_features and model_cfg.features_as == "fallback":
        plain_cfg = dataclasses.replace(model_cfg, use_item_features=False, feature_shift=0.0)
        plain_state = None if init_state is None else {k: v for k, v in init_state.items()
                                                       if not k.startswith(FEATURE_MODULES + FEATURE_BUFFERS)}
        result = train_sasrec(dataset, plain_cfg, train_cfg, split, checkpoint_path, plain_state, on_epoch)
        model = fit_feature_part(result.model, model_cfg, dataset, split, cfg, init_state)
        return dataclasses.replace(result, model=model, model_cfg=model.cfg)
    ctx = distributed.setup(cfg.device)
    if ctx.device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    n_items = dataset.n_items
    if model_cfg.n_items != n_items:
        raise ValueError(f"model_cfg.n_items = {model_cfg.n_items}, but the dataset has {n_items} items")

    torch.manual_seed(cfg.seed)
    model = SASRec(model_cfg).to(ctx.device)
    if init_state is not None:
        model.load_state_dict(init_state)
    if model_cfg.use_item_features:
        model.set_titles(dataset.items, titles_in(split.train, n_items))
    net = DistributedDataParallel(model) if ctx.world_size > 1 else model
    optimizer = make_optimizer(model, cfg)
    sampling = sampling_distribution(split.train, n_items, cfg.uniform_share) if cfg.loss == "sampled" else None

    train_rows = np.flatnonzero(split.train.lengths >= 2)  # a user needs an input and a next event
    sampler = DistributedSampler(train_rows, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed)
    batch_per_rank = max(cfg.batch_size // ctx.world_size, 1)
    steps_per_epoch = math.ceil(len(sampler) / batch_per_rank)
    steps_run = min(steps_per_epoch, cfg.max_steps or steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(cfg.warmup, cfg.epochs * steps_run))
    amp_dtype = None
    if ctx.device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    history, best_metrics, best_epoch, best_state = [], {}, 0, None
    best_score, bad_evals, seconds_before, seconds_to_best, first_epoch = -1.0, 0, 0.0, 0.0, 1
    last_path = last_checkpoint_path(checkpoint_path) if checkpoint_path else None
    if cfg.resume and last_path is not None and last_path.exists():
        saved = read_checkpoint(last_path)
        check_vocabulary(saved, last_path, dataset.iid_map_hash, n_items)
        if saved["model_cfg"] != model.config():
            raise ValueError(f"{last_path}: saved with model config {saved['model_cfg']}, not {model.config()}")
        model.load_state_dict(saved["model_state"])
        state = saved["training_state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, best_metrics, best_epoch = state["history"], state["best_metrics"], state["best_epoch"]
        best_score, bad_evals = state["best_score"], state["bad_evals"]
        seconds_before, seconds_to_best, first_epoch = state["seconds"], state["seconds_to_best"], state["epoch"] + 1
        if best_epoch > 0:  # (a finished "fallback" run saved its feature part there too: not this model's)
            best_state = {k: v for k, v in read_checkpoint(checkpoint_path)["model_state"].items()
                          if k in model.state_dict()}

    started = time.perf_counter()
    stop = False
    bar = tqdm(range(first_epoch, cfg.epochs + 1), desc="sasrec", unit="epoch", disable=not (cfg.progress and ctx.is_main))
    for epoch in bar:
        epoch_started = time.perf_counter()
        seed = epoch_seed(cfg.seed, epoch, ctx.rank)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        sampler.set_epoch(epoch)
        rows = train_rows[np.fromiter(iter(sampler), dtype=np.int64)]
        window = model_cfg.max_len + 1
        net.train()
        losses = []
        train = permuted(split.train, seed) if cfg.permute else split.train
        batches = length_batches(np.minimum(train.lengths[rows], window), batch_per_rank, generator)[:steps_run]
        for batch in tqdm(batches, desc=f"epoch {epoch}", unit="step", leave=False,
                          disable=not (cfg.progress and ctx.is_main)):
            iid, feedback, time_bin, target, target_feedback = batch_tensors(
                train, rows[batch], window, cfg.crop == "random", generator, ctx.device)
            with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                hidden = net(iid, feedback, time_bin)
                loss = sequence_loss(model, hidden, target, target_feedback, cfg, generator, sampling)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(loss.item())

        record = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"), "steps": len(batches),
                  "epoch_steps": steps_per_epoch, "train_seconds": time.perf_counter() - epoch_started}
        evaluated = epoch % cfg.eval_every == 0 or epoch == cfg.epochs
        if ctx.is_main and evaluated:
            eval_started = time.perf_counter()
            metrics = evaluate(model.score, split.valid, n_items)
            record["eval_seconds"] = time.perf_counter() - eval_started
            record.update({f"valid_{k}": v for k, v in metrics.items() if k != "n_cases"})
            if metrics["ndcg@10"] > best_score:
                best_score, best_metrics, best_epoch, bad_evals = metrics["ndcg@10"], metrics, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                seconds_to_best = seconds_before + time.perf_counter() - started
                if checkpoint_path:
                    save_checkpoint(checkpoint_path, model, cfg, dataset.meta,
                                    {"valid": best_metrics, "best_epoch": best_epoch})
            else:
                bad_evals += 1
            stop = bad_evals >= cfg.patience
        record["seconds"] = seconds_before + time.perf_counter() - started
        history.append(record)
        if ctx.is_main and evaluated and last_path is not None:
            save_checkpoint(last_path, model, cfg, dataset.meta, {"valid": best_metrics}, training_state={
                "epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "history": history, "best_metrics": best_metrics,
                "best_epoch": best_epoch, "best_score": best_score, "bad_evals": bad_evals,
                "seconds": record["seconds"], "seconds_to_best": seconds_to_best})
        if ctx.is_main and on_epoch is not None:
            on_epoch(record, cfg.epochs)
        bar.set_postfix(loss=f"{record['loss']:.4f}", best_ndcg10=f"{max(best_score, 0):.4f}", best_epoch=best_epoch)
        if distributed.broadcast_from_main(stop, ctx):
            break

    seconds_total = seconds_before + time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if model_cfg.feedback_head:
        model.cfg = model_cfg = dataclasses.replace(model_cfg, like_weight=fit_like_weight(model, split.valid, n_items))
    return TrainResult(model, history, best_metrics, seconds_to_best, best_epoch,
                       epochs_run=history[-1]["epoch"] if history else 0, seconds_total=seconds_total,
                       model_cfg=model_cfg, train_cfg=cfg)


# ---- command line -------------------------------------------------------------------------------------------

# SASRecConfig fields that come from the data (feature_shift, like_weight: fitted on its validation events), not flags
DATA_FIELDS = ("n_items", "n_time_bins", "item_features", "feature_shift", "like_weight")
DELTA_MEANING = ("delta = NDCG@10 of the held-out titles people liked minus NDCG@10 of the {n} held-out titles they "
                 "disliked (EVAL.md): above 0 the model ranks what people liked above what they disliked (the larger, "
                 "the better it tells them apart); below 0 it ranks the disliked ones higher.")


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    """One --flag per dataclass field, with the field's default and type."""
    group = parser.add_argument_group(cls.__name__)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        if isinstance(default, bool) or (default is None and field.type.startswith("bool")):
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=default,
                               help="default: from the data's order" if default is None else None)
        elif default is None:  # "int | None": None = from the data's order
            group.add_argument(flag, dest=field.name, type=int, default=None, help="default: from the data's order")
        else:
            choices = {"loss": LOSSES, "crop": CROPS}.get(field.name)
            group.add_argument(flag, dest=field.name, type=type(default), default=default, choices=choices,
                               help=f"default {default}")


def configs_from_args(args: argparse.Namespace, dataset: Dataset) -> tuple[SASRecConfig, TrainConfig]:
    values = vars(args)
    model_fields = {f.name: values[f.name] for f in dataclasses.fields(SASRecConfig) if f.name not in DATA_FIELDS}
    model_cfg = SASRecConfig(n_items=dataset.n_items, n_time_bins=dataset.n_time_bins, **model_fields)
    train_cfg = TrainConfig(**{f.name: values[f.name] for f in dataclasses.fields(TrainConfig)})
    return model_cfg, train_cfg


def fit_ease(dataset: Dataset, split: LeaveOneOut, l2: float) -> TrainResult:
    """EASE fitted on the split's training part, with its validation metrics."""
    started = time.perf_counter()
    model = EASE(l2).fit(dataset, split.train)
    seconds = time.perf_counter() - started
    return TrainResult(model, [], evaluate(model.score, split.valid, dataset.n_items), seconds, 0,
                       seconds_total=seconds)


def fit_ranker(dataset: Dataset, split: LeaveOneOut, generators: tuple[str, ...], n_candidates: int,
               model_cfg: SASRecConfig, train_cfg: TrainConfig) -> TrainResult:
    """The two-stage ranker fitted on the split's training part (its SASRec generator with these configs), with
    its validation metrics."""
    started = time.perf_counter()
    sasrec = {**{k: v for k, v in asdict(model_cfg).items() if k not in DATA_FIELDS}, **asdict(train_cfg)}
    del sasrec["seed"]  # every generator's, given to each by the ranker
    model = TwoStage(generators, n_candidates, seed=train_cfg.seed,
                     fit_generator=FittedGenerators({"sasrec": sasrec})).fit(dataset, split.train)
    seconds = time.perf_counter() - started
    return TrainResult(model, [], evaluate(model.score, split.valid, dataset.n_items), seconds, 0,
                       seconds_total=seconds, train_cfg=train_cfg)


def refit_ranker(ranker: TwoStage, dataset: Dataset, split: LeaveOneOut, train_cfg: dict) -> TrainResult:
    """A ranker of ``ranker``'s options (its SASRec generator of its config and ``train_cfg``, the TrainConfig it
    was trained with) fitted anew on the split's training part, with its validation metrics (nostrade.finetune)."""
    started = time.perf_counter()
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in train_cfg.items() if k in known})
    options, sasrec = {}, ranker.generators.get("sasrec")
    if sasrec is not None:
        options["sasrec"] = {**{k: v for k, v in sasrec.config().items() if k not in DATA_FIELDS}, **asdict(cfg)}
        del options["sasrec"]["seed"]  # every generator's, given to each by the ranker
    model = TwoStage(**ranker.options(), fit_generator=FittedGenerators(options)).fit(dataset, split.train)
    seconds = time.perf_counter() - started
    return TrainResult(model, [], evaluate(model.score, split.valid, dataset.n_items), seconds, 0,
                       seconds_total=seconds, train_cfg=cfg)


def auto_generators(dataset: Dataset) -> tuple[str, ...]:
    """The ranker's generators under ``--model auto``: all of them where the order is time; without the sequence
    models where it is not (on the anime sample they added nothing and cost most of the fit: artifacts/results)."""
    return GENERATORS if dataset.order_is_time else tuple(g for g in GENERATORS if g not in SEQUENCE_GENERATORS)


def served_validation(model: ServedModel, dataset: Dataset, split: LeaveOneOut) -> dict:
    """Validation metrics of the model as served (nostrade.scoring, the catalogue as the training part knows it),
    at the genre blend α and dislike penalty chosen on those events (Scoring.choose_settings: the best net NDCG@10):
    the settings predict serves by default (``"alpha"``, ``"dislike_weight"``) and the figures ``--model auto``
    compares."""
    scoring = Scoring.over(model, dataset.training_items(split.train), dataset.n_items)
    alpha, sweep = scoring.choose_settings(split.valid)
    return {**evaluate(scoring.scorer(alpha), split.valid, dataset.n_items), "alpha": alpha,
            "dislike_weight": scoring.dislike_weight, "net_ndcg@10_by_setting": sweep}


def choose_by_validation(fit: Callable[[str], TrainResult], kinds: tuple[str, ...], dataset: Dataset,
                         split: LeaveOneOut) -> tuple[TrainResult, dict]:
    """Fit every kind (``fit(kind)``), keep the best by served validation NDCG@10 (ties: the earlier kind), and
    the table of every candidate: {"chosen", "metric", "candidates": {kind: valid metrics and fit seconds}}."""
    results, table = {}, {}
    for kind in kinds:
        results[kind] = fit(kind)
        table[kind] = {**served_validation(results[kind].model, dataset, split),
                       "fit_seconds": results[kind].seconds_total}
        print(f"auto: {kind} served validation NDCG@10 {table[kind]['ndcg@10']:.4f} "
              f"(fitted in {results[kind].seconds_total:.0f} s)", flush=True)
    chosen = max(kinds, key=lambda kind: (table[kind]["ndcg@10"], -kinds.index(kind)))
    return results[chosen], {"chosen": chosen, "metric": "ndcg@10 of the validation events, as served",
                             "candidates": table}


def run_record(dataset: Dataset, data_dir, result: TrainResult, test: dict, ctx, auto: dict | None) -> dict:
    """The metrics JSON EVAL.md asks of every run (``auto``: --model auto's table, else None)."""
    train_cfg = asdict(result.train_cfg) if result.train_cfg is not None else {}
    return {
        "model": result.model.kind, "data": str(data_dir), "source": dataset.meta.get("source"),
        "synthetic": dataset.meta.get("synthetic"), "iid_map_sha256": dataset.iid_map_hash,
        "n_users": dataset.sequences.n_users, "n_items": dataset.n_items,
        "model_config": readable_config(result.model), "train_config": train_cfg, "seed": train_cfg.get("seed"),
        "device": str(ctx.device), "world_size": ctx.world_size,
        "wall_seconds": result.seconds_total, "seconds_to_best": result.seconds_to_best,
        "best_epoch": result.best_epoch, "epochs": result.epochs_run,
        "valid": result.best_metrics, "test": test, "history": result.history, "auto": auto,
    }


def fit_kind(kind: str, dataset: Dataset, split: LeaveOneOut, args: argparse.Namespace, model_cfg: SASRecConfig,
             train_cfg: TrainConfig, on_epoch: EpochCallback | None) -> tuple[TrainResult, str]:
    """One model fitted on the split's training part, and a line saying how it went."""
    if kind == "ease":
        result = fit_ease(dataset, split, args.l2)
        return result, f"ease (l2 {args.l2:g}) fitted in {result.seconds_total:.0f} s"
    if kind == "ranker":
        generators = args.generators or auto_generators(dataset)
        result = fit_ranker(dataset, split, generators, args.n_candidates, model_cfg, train_cfg)
        return result, (f"ranker ({', '.join(result.model.generator_names)}; {args.n_candidates} candidates each) "
                        f"fitted in {result.seconds_total:.0f} s")
    # under auto, a candidate that may lose writes no checkpoint of its own (nor a resumable state)
    result = train_sasrec(dataset, model_cfg, train_cfg, split=split, on_epoch=on_epoch,
                          checkpoint_path=args.out if args.model == "sasrec" else None)
    return result, f"best epoch {result.best_epoch} of {result.epochs_run}, {result.seconds_to_best:.0f} s to best"


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/processed", help="processed folder (make_processed_data.py)")
    parser.add_argument("--out", default="checkpoints/model.pt", help="best checkpoint; <out>.last.pt for resuming")
    parser.add_argument("--metrics", default="artifacts/metrics.json", help="metrics JSON of the run")
    parser.add_argument("--model", choices=("auto", *MODEL_KINDS), default="auto",
                        help="auto (default): the best of --candidates by served validation NDCG@10; or one kind")
    parser.add_argument("--candidates", default=None,
                        help=f"--model auto: the kinds it fits and compares, some of {','.join(AUTO_KINDS)} (default: "
                             "all where the order is time, else without sasrec)")
    parser.add_argument("--l2", type=float, default=EASE().l2, help="EASE's ridge weight (default %(default)s)")
    parser.add_argument("--generators", default=None,
                        help="the ranker's candidate generators, comma-separated (default: all of "
                             f"{','.join(GENERATORS)} where the order is time, else without "
                             f"{','.join(SEQUENCE_GENERATORS)})")
    parser.add_argument("--n-candidates", type=int, default=TwoStage().n_candidates,
                        help="the ranker: titles each generator retrieves (default %(default)s)")
    add_dataclass_flags(parser, SASRecConfig, skip=DATA_FIELDS)
    add_dataclass_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    split_names = lambda text: tuple(name.strip() for name in text.split(",") if name.strip())
    args.generators = split_names(args.generators) if args.generators else None
    args.candidates = split_names(args.candidates) if args.candidates else None
    return args


def auto_candidates(dataset: Dataset) -> tuple[str, ...]:
    """What ``--model auto`` compares by default: every kind where the order is time; EASE and the ranker where it
    is not (the order-free SASRec trains for minutes on the sample, the demo's budget, and scored about half of
    EASE's test NDCG@10 there: artifacts/results/anime.md; ``--candidates`` adds it)."""
    return AUTO_KINDS if dataset.order_is_time else tuple(k for k in AUTO_KINDS if k != "sasrec")


def check_options(args: argparse.Namespace, dataset: Dataset) -> tuple[str, ...]:
    """The kinds to fit; bad options fail here (ValueError), before any fitting."""
    kinds = (args.candidates or auto_candidates(dataset)) if args.model == "auto" else (args.model,)
    if not kinds or set(kinds) - set(AUTO_KINDS):
        raise ValueError(f"--candidates: {','.join(kinds)} must be some of {','.join(AUTO_KINDS)}")
    if "ranker" in kinds:
        TwoStage(args.generators or GENERATORS, args.n_candidates)
    return kinds


def main(argv=None, on_epoch: EpochCallback | None = None) -> int:
    """The command line. ``on_epoch``: as train_sasrec's, for a caller that runs it in-process (code/app.py)."""
    args = parse_args(argv)
    try:
        dataset = load_dataset(args.data)
        model_cfg, train_cfg = configs_from_args(args, dataset)
        kinds = check_options(args, dataset)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ctx = distributed.setup(train_cfg.device)
    try:
        split = split_of(dataset)
        done = {}  # kind -> the line saying how its fit went

        def fit(kind: str) -> TrainResult:
            result, done[kind] = fit_kind(kind, dataset, split, args, model_cfg, train_cfg, on_epoch)
            return result

        if args.model == "auto":
            result, auto = choose_by_validation(fit, kinds, dataset, split)
            served = auto["candidates"][result.model.kind]
        else:
            result, auto = fit(args.model), None
            served = served_validation(result.model, dataset, split) if ctx.is_main else {}
        if ctx.is_main:
            test = evaluate_all_targets(result.model.score, split, dataset.n_items)
            settings = {"alpha": served["alpha"], "dislike_weight": served["dislike_weight"]}
            save_checkpoint(args.out, result.model, result.train_cfg or {}, dataset.meta,
                            {"valid": result.best_metrics, "best_epoch": result.best_epoch, "test": test,
                             "auto": auto, "served": settings})
            write_json(args.metrics, run_record(dataset, args.data, result, test, ctx, auto))
            nxt, liked = test["next_item"], test["next_liked"]
            chosen = f"auto chose {result.model.kind}: " if auto else ""
            print(f"{chosen}{done[result.model.kind]}; test NDCG@10 {nxt['ndcg@10']:.4f} HR@10 {nxt['hr@10']:.4f} "
                  f"(next item), NDCG@10 {liked['ndcg@10']:.4f} (next liked), delta {test['delta_ndcg@10']:+.4f}; "
                  f"wrote {args.out} and {args.metrics}")
            print(DELTA_MEANING.format(n=test["next_disliked"]["n_cases"]))
        distributed.wait_for_all(ctx)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 5
    except WriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 7
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
