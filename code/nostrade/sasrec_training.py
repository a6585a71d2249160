"""The SASRec training loop (the models layer): ``train_sasrec(dataset, model_cfg, train_cfg)`` -> TrainResult.

One epoch = one window of (at most max_len + 1) consecutive training events per user; position t predicts
event t + 1. Where the data's order is not time (meta.json's ``order_is_time``), every training history is
first put in a fresh seeded random order each epoch (``permute``), and the model has no position embedding
(nostrade.sasrec_net): it learns which titles go together, not which come next in the file. Early stopping on
validation NDCG@10 (full ranking, nostrade.evaluate). Given a ``checkpoint_path``, the best model goes there and
the full training state after every evaluation to <path>.last.pt, so ``resume`` continues a killed run exactly
where its last evaluation left it. Data parallel under torchrun (nostrade.distributed: gloo on CPU, NCCL on GPUs).

Losses (``TrainConfig.loss``): ``ce``, the softmax over the whole catalogue (the most accurate; its cost grows with
the catalogue); ``sampled``, a softmax over ``shared_negatives`` titles drawn once per batch (a ``uniform_share``
uniformly, the rest by popularity), log-Q corrected, for large catalogues (benchmarks/scale.py: the full Kaggle
size); ``bce`` / ``bpr``, ``n_negatives`` titles per position (ablations).

The command line that trains and serves a model of any kind is nostrade.train.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from nostrade import distributed
from nostrade.checkpoint import ServedModel, check_vocabulary, read_checkpoint, save_checkpoint
from nostrade.dataset import Dataset
from nostrade.evaluate import evaluate, history_mask, metrics_from_ranks, net_ndcg, target_ranks
from nostrade.item_features import FeatureEncoding
from nostrade.sasrec_net import FEATURE_BUFFERS, FEATURE_MODULES, SASRec, SASRecConfig, trim_left_padding
from nostrade.sequences import DISLIKE, LOVE, Sequences
from nostrade.split import EvalCases, LeaveOneOut, permuted, split_of

LOSSES = ("ce", "sampled", "bce", "bpr")
CROPS = ("random", "last")
EpochCallback = Callable[[dict, int], None]  # (the epoch's history record, cfg.epochs)
# SASRecConfig fields that come from the data (feature_shift, like_weight: fitted on its validation events), not options
DATA_FIELDS = ("n_items", "n_time_bins", "item_features", "feature_shift", "like_weight")
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
    """The "fallback" item features (nostrade.sasrec_net): ``plain`` (trained without features), frozen, with a feature
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
    """The shift (nostrade.sasrec_net's ``feature_shift``) of the scores of the titles without an id part that gives
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
    """The ``like_weight`` (nostrade.sasrec_net's feedback head) of the best net NDCG@10 over ``cases`` (the validation
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


@dataclass
class Run:
    """What one SASRec training run steps with (``start_run``)."""
    model: SASRec
    net: torch.nn.Module  # the model, wrapped for data parallel under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None  # mixed precision on CUDA
    sampler: DistributedSampler  # this process's share of the training rows, reshuffled each epoch
    train_rows: np.ndarray  # the users with an input and a next event
    batch_per_rank: int
    steps_per_epoch: int
    steps_run: int  # per epoch: cfg.max_steps or all of them
    sampling: torch.Tensor | None  # the "sampled" loss's distribution of negatives
    ctx: distributed.Context
    cfg: TrainConfig
    split: LeaveOneOut


@dataclass
class Progress:
    """Where a run stands after an epoch; all of it (but ``best_state``, ``stop``) is the resumable training state."""
    history: list[dict] = dataclasses.field(default_factory=list)
    best_metrics: dict = dataclasses.field(default_factory=dict)
    best_epoch: int = 0
    best_score: float = -1.0
    bad_evals: int = 0
    seconds: float = 0.0  # training seconds before this process started (a resumed run's earlier ones)
    seconds_to_best: float = 0.0
    epoch: int = 0  # the last epoch run
    best_state: dict | None = None
    stop: bool = False


def start_run(dataset: Dataset, model_cfg: SASRecConfig, cfg: TrainConfig, split: LeaveOneOut,
              init_state: dict | None, ctx: distributed.Context) -> Run:
    """A fresh model (seeded; ``init_state`` loaded) and its optimizer, schedule and batching."""
    torch.manual_seed(cfg.seed)
    model = SASRec(model_cfg).to(ctx.device)
    if init_state is not None:
        model.load_state_dict(init_state)
    if model_cfg.use_item_features:
        model.set_titles(dataset.items, titles_in(split.train, dataset.n_items))
    optimizer = make_optimizer(model, cfg)
    train_rows = np.flatnonzero(split.train.lengths >= 2)  # a user needs an input and a next event
    sampler = DistributedSampler(train_rows, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed)
    batch_per_rank = max(cfg.batch_size // ctx.world_size, 1)
    steps_per_epoch = math.ceil(len(sampler) / batch_per_rank)
    steps_run = min(steps_per_epoch, cfg.max_steps or steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(cfg.warmup, cfg.epochs * steps_run))
    amp_dtype = None
    if ctx.device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    sampling = sampling_distribution(split.train, dataset.n_items, cfg.uniform_share) if cfg.loss == "sampled" else None
    return Run(model, DistributedDataParallel(model) if ctx.world_size > 1 else model, optimizer, scheduler,
               torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16), amp_dtype, sampler, train_rows,
               batch_per_rank, steps_per_epoch, steps_run, sampling, ctx, cfg, split)


def resume_progress(run: Run, dataset: Dataset, last_path: Path, best_path: Path) -> Progress:
    """The run's model, optimizer, schedule and progress as ``last_path`` saved them after its last evaluation."""
    saved = read_checkpoint(last_path)
    check_vocabulary(saved, last_path, dataset.iid_map_hash, dataset.n_items)
    if saved["model_cfg"] != run.model.config():
        raise ValueError(f"{last_path}: saved with model config {saved['model_cfg']}, not {run.model.config()}")
    run.model.load_state_dict(saved["model_state"])
    state = saved["training_state"]
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    progress = Progress(**{f.name: state[f.name] for f in dataclasses.fields(Progress)
                           if f.name not in ("best_state", "stop")})
    if progress.best_epoch > 0:  # (a finished "fallback" run saved its feature part there too: not this model's)
        progress.best_state = {k: v for k, v in read_checkpoint(best_path)["model_state"].items()
                               if k in run.model.state_dict()}
    return progress


def train_epoch(run: Run, epoch: int) -> dict:
    """One epoch of optimizer steps (at most ``steps_run``); its history record (loss, steps, seconds)."""
    cfg, ctx, started = run.cfg, run.ctx, time.perf_counter()
    seed = epoch_seed(cfg.seed, epoch, ctx.rank)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    run.sampler.set_epoch(epoch)
    rows = run.train_rows[np.fromiter(iter(run.sampler), dtype=np.int64)]
    window = run.model.cfg.max_len + 1
    run.net.train()
    losses = []
    train = permuted(run.split.train, seed) if cfg.permute else run.split.train
    batches = length_batches(np.minimum(train.lengths[rows], window), run.batch_per_rank, generator)[:run.steps_run]
    for batch in tqdm(batches, desc=f"epoch {epoch}", unit="step", leave=False,
                      disable=not (cfg.progress and ctx.is_main)):
        iid, feedback, time_bin, target, target_feedback = batch_tensors(
            train, rows[batch], window, cfg.crop == "random", generator, ctx.device)
        with torch.autocast(ctx.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
            hidden = run.net(iid, feedback, time_bin)
            loss = sequence_loss(run.model, hidden, target, target_feedback, cfg, generator, run.sampling)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        losses.append(loss.item())
    return {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"), "steps": len(batches),
            "epoch_steps": run.steps_per_epoch, "train_seconds": time.perf_counter() - started}


def evaluate_epoch(run: Run, progress: Progress, record: dict, dataset: Dataset, checkpoint_path,
                   seconds_so_far: Callable[[], float]) -> None:
    """Validation metrics into ``record``; a better NDCG@10 becomes the best (saved to ``checkpoint_path``), else
    one more bad evaluation towards ``patience``."""
    started = time.perf_counter()
    metrics = evaluate(run.model.score, run.split.valid, dataset.n_items)
    record["eval_seconds"] = time.perf_counter() - started
    record.update({f"valid_{k}": v for k, v in metrics.items() if k != "n_cases"})
    if metrics["ndcg@10"] > progress.best_score:
        progress.best_score, progress.best_metrics, progress.best_epoch = metrics["ndcg@10"], metrics, record["epoch"]
        progress.bad_evals = 0
        progress.best_state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
        progress.seconds_to_best = seconds_so_far()
        if checkpoint_path:
            save_checkpoint(checkpoint_path, run.model, run.cfg, dataset.meta,
                            {"valid": progress.best_metrics, "best_epoch": progress.best_epoch})
    else:
        progress.bad_evals += 1
    progress.stop = progress.bad_evals >= run.cfg.patience


def save_progress(run: Run, progress: Progress, dataset: Dataset, last_path: Path) -> None:
    """The model and everything a resume needs (``resume_progress``) after an evaluation."""
    state = {f.name: getattr(progress, f.name) for f in dataclasses.fields(Progress)
             if f.name not in ("best_state", "stop")}
    save_checkpoint(last_path, run.model, run.cfg, dataset.meta, {"valid": progress.best_metrics}, training_state={
        **state, "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict()})


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
    if model_cfg.n_items != dataset.n_items:
        raise ValueError(f"model_cfg.n_items = {model_cfg.n_items}, but the dataset has {dataset.n_items} items")
    run = start_run(dataset, model_cfg, cfg, split, init_state, ctx)
    last_path = last_checkpoint_path(checkpoint_path) if checkpoint_path else None
    resuming = cfg.resume and last_path is not None and last_path.exists()
    progress = resume_progress(run, dataset, last_path, Path(checkpoint_path)) if resuming else Progress()
    seconds_before, started = progress.seconds, time.perf_counter()

    def seconds_so_far() -> float:  # training seconds, a resumed run's earlier ones included
        return seconds_before + time.perf_counter() - started

    bar = tqdm(range(progress.epoch + 1, cfg.epochs + 1), desc="sasrec", unit="epoch",
               disable=not (cfg.progress and ctx.is_main))
    for epoch in bar:
        record = train_epoch(run, epoch)
        evaluated = epoch % cfg.eval_every == 0 or epoch == cfg.epochs
        if ctx.is_main and evaluated:
            evaluate_epoch(run, progress, record, dataset, checkpoint_path, seconds_so_far)
        progress.epoch, progress.seconds = epoch, seconds_so_far()
        record["seconds"] = progress.seconds
        progress.history.append(record)
        if ctx.is_main and evaluated and last_path is not None:
            save_progress(run, progress, dataset, last_path)
        if ctx.is_main and on_epoch is not None:
            on_epoch(record, cfg.epochs)
        bar.set_postfix(loss=f"{record['loss']:.4f}", best_ndcg10=f"{max(progress.best_score, 0):.4f}",
                        best_epoch=progress.best_epoch)
        if distributed.broadcast_from_main(progress.stop, ctx):
            break
    return finished(run, progress, seconds_so_far())


def finished(run: Run, progress: Progress, seconds_total: float) -> TrainResult:
    """The best epoch's model, its feedback head's like_weight fitted on the validation events, and the record."""
    model, model_cfg = run.model, run.model.cfg
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    model.eval()
    if model_cfg.feedback_head:
        model.cfg = model_cfg = dataclasses.replace(
            model_cfg, like_weight=fit_like_weight(model, run.split.valid, model_cfg.n_items))
    history = progress.history
    return TrainResult(model, history, progress.best_metrics, progress.seconds_to_best, progress.best_epoch,
                       epochs_run=history[-1]["epoch"] if history else 0, seconds_total=seconds_total,
                       model_cfg=model_cfg, train_cfg=run.cfg)
