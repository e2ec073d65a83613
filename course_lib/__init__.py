"""pixelcnn-course: PixelCNN and Gated PixelCNN from first principles.

Reading order (each module imports only modules above it):
    errors           CourseError: one sentence naming the problem and the fix
    config           fast mode for tests, the data folder, pick(fast=..., full=...)
    device           CUDA, Apple MPS or the CPU; where a model lives; waiting for a GPU; how many CPU threads
    toy              tiny enumerable worlds: exact joints, conditionals, the chain rule (lesson 01)
    masks            masked convolutions: masks A and B, R -> G -> B groups, the vertical stack (lesson 02)
    logistic         the discretized logistic mixture: a distribution whose levels are neighbours (lesson 06)
    heads            what the last layer's numbers mean: Bernoulli, softmax, logistic mixture; the logits layout
    models           PixelCNN and Gated PixelCNN; log_likelihood, the one way to score an image (lesson 02)
    made             MADE: a fully connected autoregressive model, masks from degrees (lesson 07)
    causality        the Jacobian test of causality, receptive fields (lesson 02)
    distributed      data parallelism with torchrun: ranks, shards, sums over processes (lesson 03)
    likelihood       nats and bits/dim, the independent-pixel baseline, evaluation of every image (lesson 01)
    data             data sets, offline first: binarize, quantize, colour (lessons 00-05)
    checkpoint       atomic checkpoints that rebuild their own model (lesson 03)
    train            fit: precision, channels_last, compile, clipping, schedule, exact resume (lesson 03)
    zoo              the shipped models trained for longer: pretrained("binary"), retrain (make pretrained)
    plotting         image grids and learning curves
    cached_sampling  fast, exact sampling with activation caches (lesson 04)
    sampling         ancestral sampling, naive then cached; temperature, completion, guidance (lesson 04)
    attention        self-attention over pixels: a causal transformer, its key/value cache (lesson 07)
    stepping         sampling one sub-pixel at a time, for the widget (lesson 04)
    neighbours       the nearest training images: memorised or new? (lesson 04)
    finetune         freezing, added conditioning, classifiers, repair (lesson 05)
    benchmark        honest speed measurements (lesson 03)
    cli              the command line: python -m course_lib {train,sample,evaluate}

Importing course_lib runs PyTorch on no more CPU threads than this process may use: a classroom server's
CPU quota (a JupyterHub `cpu_limit`, Docker `--cpus`) leaves every core visible, and PyTorch would start a
thread per core. A count you set yourself is kept (`device.use_allowed_threads` says how that is told).

Annotations: a tensor is described by its shape in the docstring, (B, C, H, W), which says more than a type
hint would; type hints are written where they tell a reader something a name does not (a str, a dict, a
path, a number's unit), and are never required.
"""

from .attention import PixelTransformer, sample_with_cache
from .checkpoint import load_checkpoint, load_into, load_model, save_checkpoint
from .config import data_dir, is_fast, pick
from .data import DATASETS, ImageDataset, load_dataset, quantize
from .device import pick_device, use_allowed_threads
from .errors import CheckpointError, CourseError, DatasetUnavailable, TrainingDiverged
from .likelihood import IndependentPixelModel, bits_per_dim, evaluate, log_prob_from_logits, nll
from .made import MADE
from .masks import MaskedConv2d, raster_mask, vertical_mask
from .models import GatedPixelCNN, PixelCNN, build_model, count_parameters, log_likelihood
from .sampling import occlude, sample
from .train import TrainConfig, Trainer, fit, seed_everything
from .zoo import pretrained

__all__ = [
    "DATASETS",
    "CheckpointError",
    "CourseError",
    "DatasetUnavailable",
    "GatedPixelCNN",
    "ImageDataset",
    "IndependentPixelModel",
    "MADE",
    "MaskedConv2d",
    "PixelCNN",
    "PixelTransformer",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "bits_per_dim",
    "build_model",
    "count_parameters",
    "data_dir",
    "evaluate",
    "fit",
    "is_fast",
    "load_checkpoint",
    "load_dataset",
    "load_into",
    "load_model",
    "log_likelihood",
    "log_prob_from_logits",
    "nll",
    "occlude",
    "pick",
    "pick_device",
    "pretrained",
    "quantize",
    "raster_mask",
    "sample",
    "sample_with_cache",
    "save_checkpoint",
    "seed_everything",
    "vertical_mask",
]
__version__ = "0.1.0"

use_allowed_threads()
