"""The model zoo: real pretrained models shipped by packages, and tiny random models for tests.

Example:
    >>> from workbench import zoo
    >>> zoo.ZOO.names()
    ['efficientnet-lite0', 'gemma3-270m', 'minilm-l6', 'smollm2-135m', 'tiny-bert', 'tiny-cnn',
     'tiny-gemma3', 'tiny-gpt2', 'tiny-llama', 'tiny-whisper', 'whisper-tiny-en']
    >>> tiny = zoo.load("tiny-llama")  # float32, eval, frozen; tiny.fingerprint identifies it
"""

from workbench.zoo import efficientnet, gemma3, smollm2, tiny, whisper  # noqa: F401  (register their loaders)
from workbench.zoo.base import ZOO, ZooModel, load
from workbench.zoo.cache import cache_dir
from workbench.zoo.fingerprint import fingerprint
from workbench.zoo.minilm import embed_sentences

__all__ = ["ZOO", "ZooModel", "cache_dir", "embed_sentences", "fingerprint", "load"]
