"""kiln.utils: set_random_seed, to_categorical, pad_sequences, PyDataset,
text_dataset_from_directory, image_dataset_from_directory (as keras.utils)."""

from kiln.frontends.keras.datasets.encoding import pad_sequences, to_categorical
from kiln.frontends.keras.from_directory import text_dataset_from_directory
from kiln.frontends.keras.images import image_dataset_from_directory
from kiln.frontends.keras.seeding import set_random_seed
from kiln.frontends.keras.streams import PyDataset

Sequence = PyDataset  # Keras 3 keeps keras.utils.Sequence as an alias of PyDataset

__all__ = ["PyDataset", "Sequence", "image_dataset_from_directory", "pad_sequences",
           "set_random_seed", "text_dataset_from_directory", "to_categorical"]
