"""Evaluation and calibration data: named sets from the data folder, the official CIFAR-10 batches, and a user's
folder of .npy / .npz files (data/folder.py)."""

from flexround_mcu.data.cifar_batches import load_cifar10_batches
from flexround_mcu.data.datasets import DATASETS, Dataset, load_dataset, model_units
from flexround_mcu.data.folder import load_data, load_folder
from flexround_mcu.data.paths import data_root, require_file

__all__ = ["Dataset", "load_dataset", "load_data", "load_folder", "DATASETS", "data_root", "require_file",
           "load_cifar10_batches", "model_units"]
