"""pixelcnn-course: PixelCNN and Gated PixelCNN from first principles.

Read the modules in this order: masks (causal convolutions) -> models (PixelCNN, Gated PixelCNN)
-> likelihood (nats, bits/dim, baseline, evaluation) -> data -> train -> checkpoint -> sampling
-> cached_sampling (fast, exact) -> plotting -> benchmark -> cli.
"""
from .checkpoint import load_checkpoint, load_into, load_model, save_checkpoint
from .config import data_dir, is_fast, pick
from .data import DATASETS, ImageDataset, load_dataset, quantize
from .errors import CheckpointError, CourseError, DatasetUnavailable, TrainingDiverged
from .likelihood import IndependentPixelModel, bits_per_dim, evaluate, log_prob_from_logits, nll
from .masks import MaskedConv2d, raster_mask, vertical_mask
from .models import GatedPixelCNN, PixelCNN, build_model, count_parameters
from .sampling import occlude, sample
from .train import TrainConfig, Trainer, fit, pick_device, seed_everything

__version__ = "0.1.0"
