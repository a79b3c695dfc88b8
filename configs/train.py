"""Meta-MMFNet's training configuration (``TrainConfig``), its named recipes and its stage hashes.

A leaf module: nothing of the project, no torch, so the CLI's parser, the flows' parameters and a
search's grid read these settings without importing the training code. The names an encoder and an
input layout may take are written here (``ENCODER_NAMES``, ``LAYOUT_NAMES``); training/encoders.py and
training/model.py check at import that their registries hold exactly these names.

The hashes must never change for the same settings: checkpoints are named by ``stage_hash`` and result
rows carry ``hash``, so another hash would retrain every stage already checkpointed
(tests/test_configs.py pins them).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from merflow.configs.base import Config, choice, config_hash

# training/encoders.py ENCODERS' names and training/model.py INPUT_LAYOUTS (each module checks it matches).
ENCODER_NAMES = ("small", "resnet18")
LAYOUT_NAMES = ("stack_height", "channels")
EPOCH_CHOICES = ("validation", "loss", "last")
ALPHA_CHOICES = ("accuracy", "loss")
# The settings classifier pretraining depends on (not shots, queries, meta-training or α).
PRETRAIN_SETTINGS = ("encoder", "layout", "batch_size", "pretrain_lr", "momentum", "weight_decay", "seed",
                     "pretrain_lr_step", "epoch_choice", "min_epoch_fraction", "duplicate_fit")
# Settings that came after the first checkpoints, and the value that behaves as before them.
NEUTRAL_SETTINGS = {"min_epoch_fraction": (0.0,), "alpha_choice": ("accuracy",)}

# Named starting points of a TrainConfig (`merflow train/tune --recipe`). "merflow" is the model's
# defaults. "published" is Meta-MMFNet's code, wenjgong/meta-fusion-based-method at d3eb35de
# (read 2026-12-01); every line names where the value is read. What it cannot restore (ImageNet
# initialisation, the pre-cropped faces, ...) is listed in docs/recipes.md.
RECIPES: dict[str, dict] = {
    "merflow": {},
    "published": {
        "encoder": "resnet18",           # configs/train_meta_mini.yaml model_args.encoder
        "layout": "stack_height",        # DebinMeng_train.TripleImageDataset: torch.cat((img_cha, gl), 1)
        "shots": 5, "queries": 1,        # train_meta_mini.yaml n_shot 5, n_query 1 (n_way: every class)
        "macro_epochs": 100,             # configs/train_classifier_mini.yaml max_epoch 100
        "pretrain_epochs": 50,           # train_meta_mini.yaml max_epoch1 50
        "meta_epochs": 7,                # train_meta_mini.yaml max_epoch 7
        "batches_per_epoch": 30, "episodes_per_batch": 4,  # train_batches 30, ep_per_batch 4
        "batch_size": 128,               # train_classifier_mini.yaml batch_size; train_meta_mini.yaml batch_size1
        "pretrain_lr": 0.01,             # optimizer_args lr 0.01 (CK+), optimizer_args1 lr 0.01 (micro)
        "meta_lr": 0.05,                 # train_meta_mini.yaml optimizer_args lr 0.05
        "meta_lr_step": 3,               # utils.make_optimizer: StepLR(step_size=3, gamma=0.1)
        # utils.make_optimizer1 / make_optimizer: StepLR(3, 0.1) whenever `milestones` is set, and both
        # configs set milestones [90], so both pretrainings step too (the [90] itself is never used).
        "pretrain_lr_step": 3,
        "momentum": 0.9,                 # utils.make_optimizer*: SGD(..., momentum=0.9, ...)
        "weight_decay": 0.0,             # utils.make_optimizer*: SGD(..., weight_decay=False), whatever the config says
        "epoch_choice": "last",          # train_meta.py loads each stage's 'epoch-last.pth' and scores the last epoch
        "validation_fraction": 0.0,      # no inner validation: the fold trains on every training subject
        "duplicate_fit": True,           # load_imgs_tsn(kuochong=True): every training sample listed twice
        "alphas": tuple(round(0.1 * j, 1) for j in range(1, 11)),  # train_meta.py: `for j in range(1, 11)`: j/10
    },
}
RECIPE_NAMES = tuple(RECIPES)

Encoder = choice(ENCODER_NAMES)
Layout = choice(LAYOUT_NAMES)
Recipe = choice(RECIPE_NAMES)
EpochChoice = choice(EPOCH_CHOICES)
AlphaChoice = choice(ALPHA_CHOICES)


class TrainConfig(Config):
    """Everything that decides a training run's numbers; recorded with every result row."""

    encoder: Encoder = Field("small", description="the encoder network (training/encoders.py)")
    layout: Layout = Field("stack_height", description="difference above flow in one 3x2HxW image (stack_height, "
                                                       "as published), or 6 channels")
    shots: int = Field(5, description="support shots per class")
    queries: int = 1
    macro_epochs: int = Field(100, description="CK+ pretraining epochs")  # published: 100 epochs on CK+
    pretrain_epochs: int = Field(50, description="micro pretraining epochs per fold")  # published: 50 per fold
    meta_epochs: int = Field(7, description="meta-training epochs")
    # published: 30 batches of 4 episodes
    batches_per_epoch: int = Field(30, description="episode batches per meta epoch")
    episodes_per_batch: int = 4
    batch_size: int = Field(32, description="classifier pretraining mini-batch; a small set trains few steps an "
                                            "epoch: see benchmarks/README.md, model selection")
    pretrain_lr: float = 0.01
    meta_lr: float = 0.05
    meta_lr_step: int = 3            # x0.1 every 3 epochs
    momentum: float = 0.9
    weight_decay: float = 5e-4
    alphas: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(0, 11))
    seed: int = Field(0, description="random seed")
    # auto | cpu | cuda (training/loops.py pick_device)
    device: str = Field("auto", description="auto: a GPU where the trial has one")
    # The named set of defaults these settings started from. Where the recipe differs from the published
    # code, see RECIPES and docs/recipes.md.
    recipe: Recipe = Field(
        "merflow", description="merflow: leakage-free defaults, each stage's last epoch and α chosen on validation; "
                               "published: Meta-MMFNet's code's training settings (ResNet-18, batch 128, no weight "
                               "decay, StepLR pretraining, fixed schedule, no inner validation, α 1.0), not all of "
                               "its run: what it cannot restore (ImageNet weights, its face crops, half precision "
                               "on a GPU, ...) is listed in docs/recipes.md")
    pretrain_lr_step: Annotated[int, Field(ge=0)] = 0  # StepLR(step, x0.1) in both pretrainings; 0: a constant rate
    # last: a fixed schedule, each stage's last epoch (the default, benchmarks/selection.py measured why);
    # validation: each stage keeps its best validation-accuracy epoch; loss: its lowest validation cross-entropy
    epoch_choice: EpochChoice = Field(
        "last", description="each stage keeps its last epoch, its best validation accuracy (validation), or its "
                            "lowest validation loss (loss)")
    # validation/loss: a stage's first ceil(f * epochs) - 1 epochs are never kept
    min_epoch_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    alpha_choice: AlphaChoice = "accuracy"  # accuracy: α of the best validation accuracy; loss: of the lowest cross-entropy
    # training subjects held out as the fold's inner validation split
    validation_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2
    duplicate_fit: bool = False      # every fit sample twice, as the published code's `kuochong` list

    @field_validator("alphas", mode="before")
    @classmethod
    def _alphas_as_tuple(cls, alphas):
        """A stored run's JSON gives the α grid as a list; the configuration keeps a tuple."""
        return tuple(alphas) if isinstance(alphas, list) else alphas

    def to_dict(self) -> dict:
        """The settings as ``dataclasses.asdict`` gave them when TrainConfig was a dataclass (the α grid a tuple)."""
        return self.model_dump()

    @classmethod
    def from_recipe(cls, recipe: str = "merflow", **overrides) -> TrainConfig:
        """A recipe's settings (RECIPES), with ``overrides`` on top; ``recipe`` records where they started."""
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; expected one of {sorted(RECIPES)}")
        return cls(**(RECIPES[recipe] | {"recipe": recipe} | overrides))

    @property
    def recipe_differences(self) -> list[str]:
        """Under ``recipe published``: each setting given on top of the recipe that differs from the published
        code's (``"meta_epochs 1 (published: 7)"``); empty for merflow's own recipe, whose defaults are its own."""
        if self.recipe != "published":
            return []
        published = type(self)(**(RECIPES["published"] | {"recipe": "published", "seed": self.seed,
                                                          "device": self.device}))
        return [f"{name} {getattr(self, name)} (published: {getattr(published, name)})"
                for name in type(self).model_fields if getattr(self, name) != getattr(published, name)]

    def _hashed(self) -> dict:
        # Settings added later hash only where they differ from the behaviour before them
        # (NEUTRAL_SETTINGS), so a configuration that does not use them keeps its hash and checkpoints.
        return {k: v for k, v in self.to_dict().items() if NEUTRAL_SETTINGS.get(k, ()) != (v,)}

    @property
    def hash(self) -> str:
        """The digest of every setting (``config_hash``; the neutral settings only where they differ)."""
        return config_hash(self._hashed())

    def stage_hash(self, stage: str) -> str:
        """A hash of the settings a stage's weights depend on, so that configurations of a search that
        differ only in later settings (shots, α) share the earlier stages' checkpoints."""
        settings = self._hashed()
        # Not what was trained: where it ran, the recipe's name (its settings are all here) and the
        # validation fraction (the fold's fit and validation samples key the checkpoint themselves).
        for name in ("device", "recipe", "validation_fraction"):
            del settings[name]
        if stage in ("macro_pretrain", "micro_pretrain"):
            keep = PRETRAIN_SETTINGS + (("macro_epochs",) if stage == "macro_pretrain" else ("pretrain_epochs",))
            settings = {k: settings[k] for k in keep if k in settings}
        elif stage != "evaluation":  # meta-training: everything but α's grid and choice, which no weight depends on
            settings.pop("alphas"), settings.pop("alpha_choice", None)
        return config_hash({"stage": stage} | settings)
