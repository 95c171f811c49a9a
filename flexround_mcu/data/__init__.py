"""Evaluation and calibration data: named sets from the data folder, and the official CIFAR-10 batches."""

from flexround_mcu.data.cifar_batches import load_cifar10_batches
from flexround_mcu.data.datasets import DATASETS, Dataset, load_dataset
from flexround_mcu.data.paths import data_root, require_file

__all__ = ["Dataset", "load_dataset", "DATASETS", "data_root", "require_file", "load_cifar10_batches"]
